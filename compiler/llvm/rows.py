"""Row kernels: softmax, log_softmax, logsumexp, var and std over the last axis of a C-contiguous 2-d view.

The runtime moves the reduced axes last and copies to C order where needed, so every kernel sees ``rows`` rows of
``cols`` contiguous elements. One row is a few passes over data that stays in the L1/L2 cache (a softmax row of
1024 float32 is 4 KiB), so the row is read from memory once.

Kernel ABI: ``i32 {name}_row(i64 start, i64 stop, ptr args)`` with ``args = [x, out, cols]`` (64-bit words);
computes rows ``start <= r < stop``. ``out`` holds ``cols`` elements per row for softmax/log_softmax and one for
the reductions. Returns 0.

Numerics follow the numpy references in compiler/ops (nn.py, reductions.py): the max is taken out before the
exponentials, softmax divides by the sum, var is two-pass (mean, then the sum of squared deviations) divided by
``max(n - ddof, 0)``. Sums run in blocks of :data:`SUM_BLOCK` whose totals are added in float64 with
compensation: at least as accurate as numpy's pairwise summation. The max uses ``maxnum`` (it
skips nan); a nan still reaches every result through the sum, as in numpy.

>>> from sympile.compiler.ops.fused import Composite
>>> from sympile.compiler.llvm.kernels import KernelSpec, build_module
>>> spec = KernelSpec("k0", Composite(1, (), ("float32",)), (False,), 2, "softmax", (1,), "float32")
>>> [f.name for f in build_module([spec]).functions if f.name == "k0_row"]
['k0_row']
"""

from __future__ import annotations

from llvmlite import ir

from ..kernelspec import ROW_DTYPES, ROW_OPS  # noqa: F401  (ops with a row kernel: re-exported)
from .kernels import SUM_BLOCK, _body, _entry, _fabs, counted_loop
from .scalar import ScalarBuilder, ir_type

I32 = ir.IntType(32)
I64 = ir.IntType(64)
F64 = ir.DoubleType()

_FAST = ("reassoc", "nsz")


def build_row_kernel(module: ir.Module, spec) -> None:
    """Add ``{spec.name}_row`` for ``spec.reduce`` in :data:`ROW_OPS` on ``spec.inner.dtypes[0]`` elements."""
    dtype = spec.inner.dtypes[0]
    ty = ir_type(dtype)
    body = _body(module, f"{spec.name}_rowbody", 2, 1)
    start, stop, x, out, meta = body.args
    b = ir.IRBuilder(body.append_basic_block("entry"))
    cols = b.load(meta, typ=I64)
    zero = ir.Constant(I64, 0)
    op = spec.reduce
    s = ScalarBuilder(b, (dtype,), dtype)

    def row(b: ir.IRBuilder, r, state):
        s.b = b
        xr = b.gep(x, [b.mul(r, cols)], source_etype=ty)

        def load(b, j):
            return b.load(b.gep(xr, [j], source_etype=ty), typ=ty)

        if op in ("var", "std"):
            n = b.sitofp(cols, F64)
            mean = b.fdiv(_sum(b, body, cols, load, ty), n)
            mean_t = b.fptrunc(mean, ty) if ty != F64 else mean  # numpy subtracts the mean in the data's dtype

            def square(b, j):
                d = b.fsub(load(b, j), mean_t)
                return b.fmul(d, d)

            total = _sum(b, body, cols, square, ty)
            denom = b.fsub(n, ir.Constant(F64, float(spec.ddof)))
            denom = b.select(b.fcmp_ordered(">", denom, ir.Constant(F64, 0.0)), denom, ir.Constant(F64, 0.0))
            result = b.fdiv(_narrow(b, total, ty), _narrow(b, denom, ty))
            if op == "std":
                result = s.sqrt(result)
            b.store(result, b.gep(out, [r], source_etype=ty))
            return state

        def bigger(b, j, st):
            return [s.intrinsic("maxnum", st[0], load(b, j))]

        (m,) = counted_loop(b, body, zero, cols, [ir.Constant(ty, float("-inf"))], bigger, "row.max")
        if op == "logsumexp":
            # numpy's reference takes out 0 instead of an infinite (or nan) max
            finite = b.fcmp_ordered("<", _fabs(b, m), ir.Constant(ty, float("inf")))
            m = b.select(finite, m, ir.Constant(ty, 0.0))
        outr = b.gep(out, [b.mul(r, cols)], source_etype=ty)

        def exp_shifted(b, j):
            s.b = b
            e = s.math("exp", b.fsub(load(b, j), m))
            if op == "softmax":
                b.store(e, b.gep(outr, [j], source_etype=ty))
            return e

        total = _sum(b, body, cols, exp_shifted, ty)
        s.b = b
        if op == "logsumexp":
            b.store(b.fadd(s.math("log", _narrow(b, total, ty)), m), b.gep(out, [r], source_etype=ty))
        elif op == "softmax":
            t = _narrow(b, total, ty)

            def scale(b, j):
                p = b.gep(outr, [j], source_etype=ty)
                b.store(b.fdiv(b.load(p, typ=ty), t), p)
                return []

            counted_loop(b, body, zero, cols, [], lambda b, j, st: scale(b, j), "row.scale")
        else:  # log_softmax: (x - m) - log(sum)
            lse = s.math("log", _narrow(b, total, ty))

            def shift(b, j):
                b.store(b.fsub(b.fsub(load(b, j), m), lse), b.gep(outr, [j], source_etype=ty))
                return []

            counted_loop(b, body, zero, cols, [], lambda b, j, st: shift(b, j), "row.shift")
        return state

    counted_loop(b, body, start, stop, [], row, "rows")
    b.ret(ir.Constant(I32, 0))
    _entry(module, f"{spec.name}_row", body, 2, 1)


def _widen(b: ir.IRBuilder, v):
    return v if v.type == F64 else b.fpext(v, F64)


def _narrow(b: ir.IRBuilder, v, ty):
    return v if ty == F64 else b.fptrunc(v, ty)


def _sum(b: ir.IRBuilder, fn: ir.Function, length, value, ty) -> ir.Value:
    """The float64 sum of ``value(b, j)`` (of type ``ty``) for ``0 <= j < length``: blocks of SUM_BLOCK summed
    in ``ty`` in a loop LLVM vectorizes (reassociation allowed: many partial sums, as numpy's pairwise base case),
    the block totals added in float64 with Neumaier's compensation."""
    zero = ir.Constant(F64, 0.0)

    def block(b, jb, st):
        hi = b.add(jb, ir.Constant(I64, SUM_BLOCK))
        hi = b.select(b.icmp_signed("<", hi, length), hi, length)
        init = [ir.Constant(ty, 0.0)]
        (blk,) = counted_loop(
            b, fn, jb, hi, init, lambda b, j, acc: [b.fadd(acc[0], value(b, j), flags=_FAST)], "sum.b"
        )
        blk = _widen(b, blk)
        total, comp = st
        t = b.fadd(total, blk)
        big = b.fcmp_ordered(">=", _fabs(b, total), _fabs(b, blk))
        lost = b.select(big, b.fadd(b.fsub(total, t), blk), b.fadd(b.fsub(blk, t), total))
        return [t, b.fadd(comp, lost)]

    total, comp = counted_loop(
        b, fn, ir.Constant(I64, 0), length, [zero, zero], block, "sum", step=ir.Constant(I64, SUM_BLOCK)
    )
    finite = b.fcmp_ordered("<", _fabs(b, total), ir.Constant(F64, float("inf")))
    return b.select(finite, b.fadd(total, comp), total)  # inf and nan totals stand as they are
