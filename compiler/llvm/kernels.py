"""Elementwise kernels in LLVM IR: one Composite -> a contiguous loop and a strided loop over any rank.

Kernel ABI (both entry points): ``i32 name(i64 start, i64 stop, ptr args)``; it returns 0, or 1 where numpy would
raise (an integer to a negative power). ``args`` is an array of 64-bit words:

- ``{name}_c`` (contiguous): ``args = [x0, ..., x{n-1}, out]`` data pointers; computes ``out[i]`` for
  ``start <= i < stop``. Inputs marked scalar (statically of size 1) are read once; the others must be
  C-contiguous with the output's shape. This is the loop LLVM vectorizes.
- ``{name}_s`` (strided, rank >= 1): ``args = [x0, ..., x{n-1}, out, shape[ndim], strides[n][ndim]]`` with
  strides in elements (0 broadcasts, negative allowed); the output is C-contiguous. Computes the rows
  ``start <= r < stop`` of the output seen as ``(prod(shape[:-1]), shape[-1])``. Each row runs the contiguous
  loop (``{name}_loop``, shared with ``{name}_c``, not inlined) on unit-stride blocks: inputs of inner stride 0
  or of another stride are first copied into stack buffers (see _strided), so broadcasts vectorize too.

- ``{name}_r`` (reductions): the kept axes first, the reduced ones last; one output element per index in
  ``[start, stop)``. Float sums add blocks of SUM_BLOCK with compensation; long ones prefetch ahead.
- ``{name}_o`` (sum/mean/prod/max/min over leading axes of C-contiguous inputs): adds whole rows into the
  output, the columns ``[start, stop)`` in a vectorized loop (numpy's order).
- ``{name}_row`` (softmax, log_softmax, logsumexp, var, std): see rows.py.

``(start, stop)`` lets a thread pool split one call into ranges. The loop bodies are internal ``alwaysinline``
functions whose pointer arguments are ``noalias``: after inlining LLVM knows the output overlaps no input.

>>> from sympile.compiler.ops.fused import Composite
>>> spec = KernelSpec("k0", Composite(1, (("exp", (0,), ()),), ("float64", "float64")), (False,), 1)
>>> mod = build_module([spec])
>>> sorted(f.name for f in mod.functions if f.linkage == "")[:2]
['k0_c', 'k0_s']
"""

from __future__ import annotations

from llvmlite import ir

from ..kernelspec import (  # noqa: F401  (re-exported: the backends import them from here)
    OUTER_REDUCTIONS,
    ROW_OPS,
    KernelSpec,
    accumulator_dtype,
    composite_of,
    has_outer_entry,
    lowerable,
)
from ..ops.elementwise import LOWER
from .scalar import ScalarBuilder, cast, constant, emit_composite, ir_type, load_value, mem_type, store_value

I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()


def build_module(specs: list[KernelSpec], name: str = "sympile") -> ir.Module:
    """An IR module holding both entry points of every kernel in ``specs``."""
    module = ir.Module(name=name)
    for spec in specs:
        if spec.reduce in ROW_OPS:
            from .rows import build_row_kernel  # noqa: PLC0415  (rows.py builds on this module)

            build_row_kernel(module, spec)
            continue
        if spec.reduce:
            _reduction(module, spec)
            if has_outer_entry(spec):
                _outer_reduction(module, spec)
            continue
        _contiguous(module, spec)
        if spec.ndim:
            _strided(module, spec)
    return module


def _entry(module: ir.Module, name: str, body: ir.Function, n_ptrs: int, extra: int) -> None:
    """``i32 name(i64 start, i64 stop, ptr args)``: unpack ``args`` and call the noalias body."""
    fn = ir.Function(module, ir.FunctionType(I32, [I64, I64, PTR]), name)
    start, stop, args = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    words = [b.load(b.gep(args, [ir.Constant(I64, k)], source_etype=I64), typ=I64) for k in range(n_ptrs)]
    ptrs = [b.inttoptr(w, PTR) for w in words]
    rest = [b.gep(args, [ir.Constant(I64, n_ptrs)], source_etype=I64)] if extra else []
    b.ret(b.call(body, [start, stop, *ptrs, *rest]))


def _body(module: ir.Module, name: str, n_ptrs: int, extra: int) -> ir.Function:
    fn = ir.Function(module, ir.FunctionType(I32, [I64, I64] + [PTR] * (n_ptrs + extra)), name)
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    fn.attributes.add("nounwind")
    for arg in fn.args[2 : 2 + n_ptrs]:
        arg.add_attribute("noalias")
    return fn


def counted_loop(
    b: ir.IRBuilder, fn: ir.Function, lo, hi, init: list, body, label: str, step=None, hints: tuple = ()
) -> list:
    """``for i in range(lo, hi, step): values = body(b, i, values)``; returns the final loop-carried values.

    ``hints``: ``llvm.loop`` properties for the optimizer, e.g. ``(("llvm.loop.unroll.disable",),)``.
    """
    pre = b.block
    loop = fn.append_basic_block(f"{label}.loop")
    done = fn.append_basic_block(f"{label}.done")
    b.cbranch(b.icmp_signed("<", lo, hi), loop, done)
    b.position_at_end(loop)
    i = b.phi(I64, "i")
    i.add_incoming(lo, pre)
    phis = []
    for v in init:
        phi = b.phi(v.type)
        phi.add_incoming(v, pre)
        phis.append(phi)
    new = body(b, i, phis)
    nxt = b.add(i, step or ir.Constant(I64, 1), flags=["nsw"])
    tail = b.block
    i.add_incoming(nxt, tail)
    for phi, v in zip(phis, new):
        phi.add_incoming(v, tail)
    latch = b.cbranch(b.icmp_signed("<", nxt, hi), loop, done)
    if hints:
        latch.set_metadata("llvm.loop", _loop_id(b.module, hints))
    b.position_at_end(done)
    out = []
    for v0, v in zip(init, new):
        phi = b.phi(v0.type)
        phi.add_incoming(v0, pre)
        phi.add_incoming(v, tail)
        out.append(phi)
    return out


def _loop_id(module: ir.Module, hints: tuple) -> ir.MDValue:
    """A new loop ID ``!N = !{!N, !{"property", value...}, ...}`` (LLVM wants the self-reference first;
    llvmlite has no helper for it, so the node's operands are set after it exists)."""
    props = [module.add_metadata(list(h)) for h in hints]
    node = ir.MDValue(module, props, name=str(len(module.metadata)))
    node.operands = (node, *props)
    return node


#: a copy loop the vectorizer and unroller leave alone: vector code for it never runs (or barely pays) and
#: doubled the strided entry's compile time
_PLAIN_LOOP = (("llvm.loop.vectorize.enable", ir.Constant(ir.IntType(1), 0)), ("llvm.loop.unroll.disable",))


def _counted_loop(b: ir.IRBuilder, fn: ir.Function, lo, hi, emit, label: str):
    """``for i in [lo, hi): err |= emit(b, i)``; returns the OR of the per-iteration i32 error words."""
    (err,) = counted_loop(b, fn, lo, hi, [ir.Constant(I32, 0)], lambda b, i, vs: [b.or_(vs[0], emit(b, i))], label)
    return err


def _compute(b: ir.IRBuilder, spec: KernelSpec, values: list, out_ptr):
    result, errors = emit_composite(b, spec.inner, values, LOWER)
    store_value(b, result, out_ptr, spec.inner.dtype)
    word = ir.Constant(I32, 0)
    for cond in errors:
        word = b.or_(word, b.zext(cond, I32))
    return word


def _contiguous(module: ir.Module, spec: KernelSpec) -> None:
    n = spec.n_inputs
    body = _body(module, f"{spec.name}_cbody", n + 1, 0)
    start, stop, *ptrs = body.args
    b = ir.IRBuilder(body.append_basic_block("entry"))
    dtypes = spec.inner.dtypes[:n]
    # statically scalar inputs are read once, outside the loop
    fixed = {k: load_value(b, ptrs[k], dtypes[k]) for k in range(n) if spec.scalar_inputs[k]}
    out_ty = mem_type(spec.inner.dtype)

    def step(b: ir.IRBuilder, i):
        values = [
            fixed[k] if k in fixed else load_value(b, b.gep(ptrs[k], [i], source_etype=mem_type(dtypes[k])), dtypes[k])
            for k in range(n)
        ]
        return _compute(b, spec, values, b.gep(ptrs[n], [i], source_etype=out_ty))

    # a plain counted loop: blocking it and prefetching the next block (as loops.py does) ran W1 25% slower here
    b.ret(_counted_loop(b, body, start, stop, step, "c"))
    _entry(module, f"{spec.name}_c", _loop_function(module, spec), n + 1, 0)


#: the strided entry computes a row in blocks of this many elements where some input's inner stride is not 1
#: (2 KiB of stack per input at most): such inputs are first copied into a buffer of their own (a broadcast one
#: filled once per row), so the loop that computes always reads unit strides and LLVM vectorizes it
STRIDED_BLOCK = 256


def _loop_function(module: ir.Module, spec: KernelSpec) -> ir.Function:
    """``{name}_loop``: the contiguous loop as a function of its own (not inlined), defined once per kernel.

    ``{name}_c`` calls it over its range and ``{name}_s`` per block of a row: the composite is optimized and
    vectorized once per kernel, and inside the strided entry's row and block loops its vector loop keeps the
    registers to itself (inlined there it reloaded its constants from memory and spilled its pointers: 20%
    slower than the contiguous entry)."""
    name = f"{spec.name}_loop"
    if name in module.globals:
        return module.globals[name]
    n = spec.n_inputs
    fn = ir.Function(module, ir.FunctionType(I32, [I64, I64] + [PTR] * (n + 1)), name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    for arg in fn.args[2:]:
        arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.ret(b.call(module.globals[f"{spec.name}_cbody"], list(fn.args)))
    return fn


def _shape_and_strides(b: ir.IRBuilder, meta, nd: int, n: int) -> tuple[list, list[list]]:
    """The argument words after the pointers of the strided and reduction entries: ``shape[nd]``, then
    ``strides[n][nd]`` (in elements), loaded from ``meta``."""

    def word(k: int):
        return b.load(b.gep(meta, [ir.Constant(I64, k)], source_etype=I64), typ=I64)

    return [word(d) for d in range(nd)], [[word(nd + j * nd + d) for d in range(nd)] for j in range(n)]


def _strided(module: ir.Module, spec: KernelSpec) -> None:
    """``{name}_s``: rows of a broadcast/strided iteration space, each computed by one vectorizable loop.

    A row whose inputs all have inner stride 1 is one block read in place (a bias row: ``x + b``). Otherwise
    the row goes in blocks of STRIDED_BLOCK, and each input of inner stride other than 1 is read from a stack
    buffer: a stride-0 input (a column ``(n, 1)``, a runtime scalar) has its buffer filled once per row, an input
    of any other stride (a transposed one) is gathered into it per block. The copies are cheap next to a
    composite computed one element at a time, which is what a loop over variable strides becomes (LLVM only
    vectorizes stride 1). Each block is one call of _loop_function. Statically scalar
    inputs are read once. Row offsets are carried from row to row (no division per row).
    """
    n, nd = spec.n_inputs, spec.ndim
    loop_fn = _loop_function(module, spec)
    body = _body(module, f"{spec.name}_sbody", n + 1, 1)
    start, stop, *ptrs, meta = body.args
    b = ir.IRBuilder(body.append_basic_block("entry"))
    shape, strides = _shape_and_strides(b, meta, nd, n)
    inner_len = shape[-1]
    dtypes = spec.inner.dtypes[:n]
    mtys = [mem_type(d) for d in dtypes]
    out_ty = mem_type(spec.inner.dtype)
    zero, one = ir.Constant(I64, 0), ir.Constant(I64, 1)
    block = ir.Constant(I64, STRIDED_BLOCK)
    fixed = {k: load_value(b, ptrs[k], dtypes[k]) for k in range(n) if spec.scalar_inputs[k]}
    walk = [k for k in range(n) if k not in fixed]
    step = {k: strides[k][nd - 1] for k in walk}
    unit = {k: b.icmp_signed("==", step[k], one) for k in walk}
    bcast = {k: b.icmp_signed("==", step[k], zero) for k in walk}
    gather = {k: b.not_(b.or_(unit[k], bcast[k])) for k in walk}
    all_unit, any_bcast = ir.Constant(ir.IntType(1), 1), ir.Constant(ir.IntType(1), 0)
    for k in walk:
        all_unit, any_bcast = b.and_(all_unit, unit[k]), b.or_(any_bcast, bcast[k])
    short = b.select(b.icmp_signed("<", inner_len, block), inner_len, block)
    blk = b.select(all_unit, inner_len, short)  # one block per row where no input needs a buffer
    buffers = {}
    for k in walk:
        buffers[k] = b.alloca(mtys[k], size=block)
        buffers[k].align = 64

    # the multi-index of row `start` over shape[:-1] and each input's offset there: divisions once per call
    idx0, offsets0, rem = [zero] * (nd - 1), [zero] * len(walk), start
    for d in range(nd - 2, -1, -1):
        i = b.urem(rem, shape[d]) if d else rem  # (the row index is below prod(shape[:-1]): no division at d=0)
        rem = b.udiv(rem, shape[d]) if d else rem
        idx0[d] = i
        offsets0 = [b.add(off, b.mul(i, strides[k][d])) for k, off in zip(walk, offsets0)]

    def row(b: ir.IRBuilder, r, state):
        idx, offsets = state[: nd - 1], state[nd - 1 : nd - 1 + len(walk)]
        err = state[-1]
        bases = {k: b.gep(ptrs[k], [off], source_etype=mtys[k]) for k, off in zip(walk, offsets)}
        out_base = b.gep(ptrs[n], [b.mul(r, inner_len)], source_etype=out_ty)
        # where an input has inner stride 0, every buffer gets its input's first value of the row: one loop
        # with one condition (a loop per input made LLVM unswitch the row loop into 2^n copies); the buffers of
        # the other inputs are unused or gathered again below
        firsts = {k: b.load(bases[k], typ=mtys[k]) for k in walk}

        def fill(b, t, st):
            for k in walk:
                b.store(firsts[k], b.gep(buffers[k], [t], source_etype=mtys[k]))
            return st

        # (only as many as a block of this row takes: a (256, 10) kernel filled 256 per row, 25x the work)
        counted_loop(b, body, zero, b.select(any_bcast, short, zero), [], fill, "s.fill")

        def chunk(b: ir.IRBuilder, jb, st):
            rest = b.sub(inner_len, jb)
            length = b.select(b.icmp_signed("<", rest, blk), rest, blk)
            reads = {}
            for k in walk:  # an input of another inner stride: gathered into its buffer

                def copy(b, t, cst, k=k):
                    at = b.mul(b.add(jb, t), step[k])
                    v = b.load(b.gep(bases[k], [at], source_etype=mtys[k]), typ=mtys[k])
                    b.store(v, b.gep(buffers[k], [t], source_etype=mtys[k]))
                    return cst

                counted_loop(b, body, zero, b.select(gather[k], length, zero), [], copy, "s.gather", hints=_PLAIN_LOOP)
                reads[k] = b.select(unit[k], b.gep(bases[k], [jb], source_etype=mtys[k]), buffers[k])
            out_at = b.gep(out_base, [jb], source_etype=out_ty)
            args = [reads.get(k, ptrs[k]) for k in range(n)]
            return [b.or_(st[0], b.call(loop_fn, [zero, length, *args, out_at]))]

        (err,) = counted_loop(b, body, zero, inner_len, [err], chunk, "s.blocks", step=blk)
        # next row: step the last row axis, carrying into the outer ones (selects: no division)
        carry = ir.Constant(ir.IntType(1), 1)
        new_idx = list(idx)
        for d in range(nd - 2, -1, -1):
            bumped = b.add(idx[d], one)
            wrap = b.and_(carry, b.icmp_signed("==", bumped, shape[d]))
            moved = b.and_(carry, b.not_(wrap))
            new_idx[d] = b.select(wrap, zero, b.select(carry, bumped, idx[d]))
            back = b.mul(idx[d], ir.Constant(I64, -1))  # wrapping from shape[d]-1 to 0
            offsets = [
                b.add(off, b.select(moved, strides[k][d], b.select(wrap, b.mul(back, strides[k][d]), zero)))
                for k, off in zip(walk, offsets)
            ]
            carry = wrap
        return [*new_idx, *offsets, err]

    state = counted_loop(b, body, start, stop, [*idx0, *offsets0, ir.Constant(I32, 0)], row, "s.outer")
    b.ret(state[-1])
    _entry(module, f"{spec.name}_s", body, n + 1, 1)


#: numpy's pairwise summation bottoms out in blocks of 128; ours adds blocks with compensation
SUM_BLOCK = 128


def _identity(reduce: str, dtype: str):
    import numpy as np  # noqa: PLC0415

    if reduce in ("sum", "mean", "any"):
        return 0
    if reduce in ("prod", "all"):
        return 1
    reduce = {"argmax": "max", "argmin": "min"}.get(reduce, reduce)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return -np.inf if reduce == "max" else np.inf
    if dt.kind == "b":
        return reduce == "min"
    info = np.iinfo(dt)
    return info.min if reduce == "max" else info.max


def _reduction(module: ir.Module, spec: KernelSpec) -> None:
    """``{name}_r``: ``args = [x0, ..., out, shape[ndim], strides[n][ndim]]`` with the kept axes first and the
    reduced ones last (the caller permutes them); computes ``out[o]`` for ``start <= o < stop``."""
    n, nd = spec.n_inputs, spec.ndim
    k = nd - len(spec.axes)
    body = _body(module, f"{spec.name}_rbody", n + 1, 1)
    start, stop, *ptrs, meta = body.args
    b = ir.IRBuilder(body.append_basic_block("entry"))
    shape, strides = _shape_and_strides(b, meta, nd, n)
    dtypes = spec.inner.dtypes[:n]
    acc_dtype = accumulator_dtype(spec.reduce, spec.out_dtype, spec.inner.dtype)
    arg = spec.reduce in ("argmax", "argmin")
    acc_ty = ir_type(acc_dtype)
    is_float = acc_dtype in ("float16", "float32", "float64")
    compensated = is_float and spec.reduce in ("sum", "mean")
    rows = ir.Constant(I64, 1)
    for d in range(k, nd - 1):
        rows = b.mul(rows, shape[d])
    count = b.mul(rows, shape[nd - 1])
    inner_len = shape[nd - 1]
    zero = ir.Constant(I64, 0)
    ident = constant(acc_dtype, _identity(spec.reduce, acc_dtype))
    fast = ("reassoc", "nsz")

    def unravel(b, index, dims, offsets):
        for d in reversed(dims):
            idx = b.urem(index, shape[d])
            index = b.udiv(index, shape[d])
            offsets = [b.add(off, b.mul(idx, strides[j][d])) for j, off in enumerate(offsets)]
        return offsets

    def value(b, bases, j):
        loaded = [
            load_value(b, b.gep(bases[i], [b.mul(j, strides[i][nd - 1])], source_etype=mem_type(dtypes[i])), dtypes[i])
            for i in range(n)
        ]
        result, errors = emit_composite(b, spec.inner, loaded, LOWER)
        err = ir.Constant(I32, 0)
        for cond in errors:
            err = b.or_(err, b.zext(cond, I32))
        return cast(b, result, spec.inner.dtype, acc_dtype), err

    def combine(b, acc, v):
        s = ScalarBuilder(b, (acc_dtype, acc_dtype), acc_dtype)
        r = spec.reduce
        if r in ("max", "min"):
            return s.maximum(acc, v) if r == "max" else s.minimum(acc, v)
        if r == "all":
            return b.and_(acc, v)
        if r == "any":
            return b.or_(acc, v)
        if is_float:
            return (b.fadd if r in ("sum", "mean") else b.fmul)(acc, v, flags=fast)
        return b.add(acc, v) if r in ("sum", "mean") else b.mul(acc, v)

    strides_last = [None if spec.scalar_inputs[i] else strides[i][nd - 1] for i in range(n)]

    def output(b, o):
        base = unravel(b, o, range(k), [zero] * n)

        def row(b, rr, state):
            bases = [
                b.gep(ptrs[i], [off], source_etype=mem_type(dtypes[i]))
                for i, off in enumerate(unravel(b, rr, range(k, nd - 1), base))
            ]
            if arg:

                def element(b, j, st):
                    # numpy: the first extreme, or the first nan if there is one
                    v, err = value(b, bases, j)
                    s = ScalarBuilder(b, (acc_dtype, acc_dtype), "bool")
                    better = s.compare(">" if spec.reduce == "argmax" else "<", v, st[0])
                    take = b.and_(b.not_(s.isnan(st[0])), b.or_(better, s.isnan(v)))
                    index = b.add(b.mul(rr, inner_len), j)
                    return [b.select(take, v, st[0]), b.or_(st[1], err), b.select(take, index, st[2])]

                return counted_loop(b, body, zero, inner_len, state, element, "r.arg")
            if not compensated:

                def element(b, j, st):
                    v, err = value(b, bases, j)
                    return [combine(b, st[0], v), b.or_(st[1], err)]

                return counted_loop(b, body, zero, inner_len, state, element, "r.inner")

            def block(b, jb, st):
                hi = b.add(jb, ir.Constant(I64, SUM_BLOCK))
                hi = b.select(b.icmp_signed("<", hi, inner_len), hi, inner_len)
                long_row = b.icmp_signed(">", inner_len, ir.Constant(I64, PREFETCH_AHEAD))
                ahead = b.add(jb, ir.Constant(I64, PREFETCH_AHEAD))
                _prefetch_block(b, body, bases, strides_last, dtypes, ahead, long_row)

                def element(b, j, blk):
                    v, err = value(b, bases, j)
                    return [b.fadd(blk[0], v, flags=fast), b.or_(blk[1], err)]

                blk, err = counted_loop(b, body, jb, hi, [constant(acc_dtype, 0), st[1]], element, "r.block")
                total, comp = st[0], st[2]
                t = b.fadd(total, blk)
                big = b.fcmp_ordered(">=", _fabs(b, total), _fabs(b, blk))
                lost = b.select(big, b.fadd(b.fsub(total, t), blk), b.fadd(b.fsub(blk, t), total))
                return [t, err, b.fadd(comp, lost)]

            return counted_loop(b, body, zero, inner_len, state, block, "r.blocks", step=ir.Constant(I64, SUM_BLOCK))

        init = [ident, ir.Constant(I32, 0)] + ([constant(acc_dtype, 0)] if compensated else [])
        init += [zero] if arg else []
        state = counted_loop(b, body, zero, rows, init, row, "r.rows")
        acc = state[0]
        if arg:
            acc, acc_dtype_ = state[2], "int64"
        else:
            acc_dtype_ = acc_dtype
        if compensated:
            finite = b.fcmp_ordered("<", _fabs(b, acc), constant(acc_dtype, float("inf")))
            acc = b.select(finite, b.fadd(acc, state[2]), acc)  # inf and nan totals stand as they are
        if spec.reduce == "mean":
            acc = b.fdiv(acc, b.sitofp(count, acc_ty)) if is_float else acc
        store_value(
            b,
            cast(b, acc, acc_dtype_, spec.out_dtype),
            b.gep(ptrs[n], [o], source_etype=mem_type(spec.out_dtype)),
            spec.out_dtype,
        )
        return state[1]

    b.ret(_counted_loop(b, body, start, stop, output, "r.outer"))
    _entry(module, f"{spec.name}_r", body, n + 1, 1)


#: reductions with an ``_o`` entry (reduced axes leading, kept ones contiguous): the result accumulates in place
def _outer_reduction(module: ir.Module, spec: KernelSpec) -> None:
    """``{name}_o``: the inputs seen as C-contiguous ``(rows, cols)`` (statically scalar ones read once), reduced
    over the rows: ``args = [x0, ..., out, rows, cols]``; computes ``out[c]`` for ``start <= c < stop``.

    Each row is combined into the output in turn, a loop over contiguous columns that LLVM vectorizes: numpy's
    own order for a reduction over leading axes (so its sums are bit-equal to numpy's), and the reduction over a
    batch axis (a bias gradient) reads its input once instead of column by column.
    """
    n = spec.n_inputs
    body = _body(module, f"{spec.name}_obody", n + 1, 1)
    start, stop, *ptrs, meta = body.args
    b = ir.IRBuilder(body.append_basic_block("entry"))
    rows = b.load(meta, typ=I64)
    cols = b.load(b.gep(meta, [ir.Constant(I64, 1)], source_etype=I64), typ=I64)
    dtypes = spec.inner.dtypes[:n]
    acc_dtype = spec.out_dtype
    out_ty = mem_type(acc_dtype)
    is_float = acc_dtype in ("float16", "float32", "float64")
    fixed = {k: load_value(b, ptrs[k], dtypes[k]) for k in range(n) if spec.scalar_inputs[k]}
    ident = constant(acc_dtype, _identity(spec.reduce, acc_dtype))
    r_ = spec.reduce

    def init(b, c):
        store_value(b, ident, b.gep(ptrs[n], [c], source_etype=out_ty), acc_dtype)
        return ir.Constant(I32, 0)

    err0 = _counted_loop(b, body, start, stop, init, "o.init")

    def row(b, r, st):
        base = b.mul(r, cols)

        def element(b, c, est):
            at = b.add(base, c)
            loaded = [
                fixed[k]
                if k in fixed
                else load_value(b, b.gep(ptrs[k], [at], source_etype=mem_type(dtypes[k])), dtypes[k])
                for k in range(n)
            ]
            result, errors = emit_composite(b, spec.inner, loaded, LOWER)
            v = cast(b, result, spec.inner.dtype, acc_dtype)
            p = b.gep(ptrs[n], [c], source_etype=out_ty)
            acc = load_value(b, p, acc_dtype)
            s = ScalarBuilder(b, (acc_dtype, acc_dtype), acc_dtype)
            if r_ in ("max", "min"):
                new = s.maximum(acc, v) if r_ == "max" else s.minimum(acc, v)
            elif is_float:
                new = (b.fadd if r_ in ("sum", "mean") else b.fmul)(acc, v)
            else:
                new = b.add(acc, v) if r_ in ("sum", "mean") else b.mul(acc, v)
            store_value(b, new, p, acc_dtype)
            err = est[0]
            for cond in errors:
                err = b.or_(err, b.zext(cond, I32))
            return [err]

        (err,) = counted_loop(b, body, start, stop, [st[0]], element, "o.cols")
        return [err]

    (err,) = counted_loop(b, body, ir.Constant(I64, 0), rows, [err0], row, "o.rows")
    if r_ == "mean" and is_float:

        def scale(b, c):
            p = b.gep(ptrs[n], [c], source_etype=out_ty)
            store_value(b, b.fdiv(load_value(b, p, acc_dtype), b.sitofp(rows, ir_type(acc_dtype))), p, acc_dtype)
            return ir.Constant(I32, 0)

        _counted_loop(b, body, start, stop, scale, "o.mean")
    b.ret(err)
    _entry(module, f"{spec.name}_o", body, n + 1, 1)


#: a long sum prefetches the block this many elements ahead: the hardware prefetcher alone leaves a loop that
#: computes (W2's exp) waiting on memory; with it the loads overlap the arithmetic
PREFETCH_AHEAD = 1024
CACHE_LINE = 64


def _prefetch_block(b: ir.IRBuilder, fn: ir.Function, bases: list, strides: list, dtypes, at, when) -> None:
    """Where ``when`` (an i1) holds, prefetch elements ``[at, at + SUM_BLOCK)`` of every input with a stride
    (``None``: statically scalar), one cache line per iteration of a small loop of its own (a prefetch inside the
    summing loop would stop the vectorizer; a prefetch never faults, so past the end is harmless)."""
    module = b.module
    intrinsic = module.globals.get("llvm.prefetch.p0") or module.declare_intrinsic(
        "llvm.prefetch", [PTR], ir.FunctionType(ir.VoidType(), [PTR, I32, I32, I32])
    )
    step = max(1, min(CACHE_LINE // _itemsize(d) for d in dtypes))

    def line(b, j, st):
        for base, stride, dtype in zip(bases, strides, dtypes):
            if stride is not None:
                address = b.gep(base, [b.mul(b.add(at, j), stride)], source_etype=mem_type(dtype))
                b.call(intrinsic, [address, ir.Constant(I32, 0), ir.Constant(I32, 3), ir.Constant(I32, 1)])
        return st

    hi = b.select(when, ir.Constant(I64, SUM_BLOCK), ir.Constant(I64, 0))
    counted_loop(b, fn, ir.Constant(I64, 0), hi, [], line, "prefetch", step=ir.Constant(I64, step))


def _itemsize(dtype: str) -> int:
    import numpy as np  # noqa: PLC0415

    return np.dtype(dtype).itemsize


def _fabs(b: ir.IRBuilder, x):
    return ScalarBuilder(b, (), "float64").intrinsic("fabs", x)


__all__ = ["KernelSpec", "build_module", "ir_type", "lowerable"]
