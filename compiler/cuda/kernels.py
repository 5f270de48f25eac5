"""GPU loop drivers: the CPU backend's scalar lowering (``emit_composite``) under grid-stride loops.

One :class:`~sympile.compiler.llvm.kernels.KernelSpec` becomes ``ptx_kernel`` entry points whose pointers live in
the global address space (``addrspace(1)``). Only the drivers are new; every element is computed by the same
scalar code as on the CPU. The same drivers are also built for the host (``mode='host'``): the thread and block
ids become loop variables of a host wrapper ``{symbol}_grid(ntid, nctaid_x, nctaid_y, <kernel params>)`` that
runs every thread of the launch in turn, so the GPU kernels' indexing is tested numerically without a GPU.

Kernel parameters (all ``i64`` or pointers; ``err`` is an ``i32`` word set to 1 where numpy would raise):

- ``{name}_c(n, x0, ..., out, err)``: contiguous elementwise, ``out[i]`` for ``i < n`` (statically scalar
  inputs are read at index 0).
- ``{name}_s(n, x0, ..., out, err, shape[ndim], strides[n_inputs][ndim])``: strided/broadcast elementwise,
  strides in elements (0 broadcasts); the output is C-contiguous.
- ``{name}_rp(x0, ..., partial, [index,] err, shape[ndim], strides[n_inputs][ndim])``: the kept axes first, the
  reduced ones last; argmax/argmin carry a second partial buffer (int64) with the index of the best value.
  Block ``(bx, by)`` reduces a ``1/nctaid_x`` share of the outputs ``o = by, by + nctaid_y, ...`` (grid-stride
  over the reduced elements, then warp shuffles and shared memory) into ``partial[o * nctaid_x + bx]``, in the
  accumulator dtype.
- ``{name}_rf(n_out, parts, count, partial, [index,] out)``: the second pass, one thread per output: combines the
  ``parts`` partials, divides by ``count`` for a mean, casts to the result dtype.
- ``{name}_mm(m, n, k, a, b, out, sa_m, sa_k, sb_k, sb_n)``: ``out[m, n] = a[m, k] @ b[k, n]`` (a
  :class:`MatmulSpec`), operands at any element strides (a transpose, or a vector with stride 0), the output
  C-contiguous. Register-tiled: with the spec's layout ``(tm, tn, tx)`` each thread computes a ``tm x tn``
  tile of ``out`` (rows ``ty + TY*i``, columns ``tx + TX*j`` of its block's ``TY*tm x TX*tn`` tile, ``TY =
  blockDim.x / TX``, so a warp's loads and stores are coalesced along rows of ``b`` and ``out``), looping over
  ``k`` with ``fmuladd``; blocks walk the tiles grid-stride. ``(4, 4, 16)`` for matrix products; a
  vector-matrix product takes ``(1, 4, 256)`` (all threads along the columns), a matrix-vector product whose
  matrix is read transposed ``(4, 1, 1)`` (all threads along the rows, which are then contiguous).

>>> from sympile.compiler.ops.fused import Composite
>>> from sympile.compiler.llvm.kernels import KernelSpec
>>> spec = KernelSpec("k0", Composite(1, (("exp", (0,), ()),), ("float32", "float32")), (False,), 1)
>>> mod = build_cuda_module([spec])
>>> sorted(f.name for f in mod.functions if f.calling_convention == "ptx_kernel")
['k0_c', 'k0_s']
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from ..llvm.kernels import KernelSpec, _identity, accumulator_dtype, counted_loop
from ..llvm.scalar import ScalarBuilder, cast, constant, emit_composite, ir_type, load_value, mem_type, store_value
from ..ops.elementwise import LOWER
from .launch import TILE, TX

I1 = ir.IntType(1)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
WARP = 32
#: the reductions with a GPU kernel
GPU_REDUCTIONS = ("sum", "prod", "max", "min", "mean", "all", "any", "argmax", "argmin")
GPU_TRIPLE = "nvptx64-nvidia-cuda"
#: LLVM intrinsics the NVPTX backend selects (checked with ptxas for sm_80 and sm_90 in the tests); a kernel
#: calling anything else (libm, llvm.exp, ...) is not built for the GPU: NVPTX would abort the process
NVPTX_INTRINSICS = (
    "llvm.fabs.", "llvm.floor.", "llvm.ceil.", "llvm.trunc.", "llvm.rint.", "llvm.round.", "llvm.roundeven.",
    "llvm.nearbyint.", "llvm.sqrt.", "llvm.fma.", "llvm.fmuladd.", "llvm.copysign.", "llvm.minnum.",
    "llvm.maxnum.", "llvm.minimum.", "llvm.maximum.", "llvm.smax.", "llvm.smin.", "llvm.umax.", "llvm.umin.",
    "llvm.abs.", "llvm.fptosi.sat.", "llvm.fptoui.sat.", "llvm.ctpop.", "llvm.nvvm.",
)  # fmt: skip


@dataclass(frozen=True)
class MatmulSpec:
    """A GPU matmul kernel ``{name}_mm`` for one float dtype. ``transposed[i]``: operand ``i`` is read through a
    transpose (the runtime passes swapped strides; the kernel code is the same)."""

    name: str
    dtype: str
    transposed: tuple = (False, False)
    #: ``(tm, tn, tx)``: each thread computes ``tm x tn`` outputs, ``tx`` threads of a block span the columns
    layout: tuple = (TILE, TILE, TX)
    reduce = None  # not a reduction (for code that looks at KernelSpec.reduce)


def gpu_buildable(spec: KernelSpec) -> bool:
    """Whether ``spec``'s kernels call only what NVPTX can select (no libm, no unsupported intrinsic).

    >>> from sympile.compiler.ops.fused import Composite
    >>> gpu_buildable(KernelSpec("k", Composite(1, (("sin", (0,), ()),), ("float64", "float64")), (False,), 1))
    True
    """
    if spec.reduce and spec.reduce not in GPU_REDUCTIONS:
        return False
    module = build_cuda_module([spec])
    return all(f.name.startswith(NVPTX_INTRINSICS) for f in module.functions if f.is_declaration)


def build_cuda_module(specs: list[KernelSpec], mode: str = "gpu", name: str = "sympile_cuda") -> ir.Module:
    """The IR module of every kernel in ``specs``: for the GPU (``mode='gpu'``) or simulated on the host."""
    module = ir.Module(name=name)
    if mode == "gpu":
        module.triple = GPU_TRIPLE
    for spec in specs:
        if isinstance(spec, MatmulSpec):
            _MatmulDriver(module, spec, mode).matmul()
            continue
        driver = _Driver(module, spec, mode)
        if spec.reduce:
            driver.reduction()
        else:
            driver.contiguous()
            if spec.ndim:
                driver.strided()
    return module


def kernel_symbols(spec: KernelSpec) -> list[str]:
    """The kernels' entry points of one spec."""
    if isinstance(spec, MatmulSpec):
        return [f"{spec.name}_mm"]
    if spec.reduce:
        return [f"{spec.name}_rp", f"{spec.name}_rf"]
    return [f"{spec.name}_c"] + ([f"{spec.name}_s"] if spec.ndim else [])


def _loop(b: ir.IRBuilder, fn: ir.Function, lo, hi, step, init: list, body, label: str) -> list:
    """``for i in range(lo, hi, step)``: the CPU backend's loop builder with the step given first."""
    return counted_loop(b, fn, lo, hi, init, body, label, step=step)


def _i64(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


class _Driver:
    """Emits the kernels of one spec. Kernel bodies are internal functions taking the thread's position
    ``(tid, ntid, ctaid_x, nctaid_x, ctaid_y, nctaid_y)`` as arguments: the GPU entry reads them from the
    special registers, the host wrapper loops over them."""

    def __init__(self, module: ir.Module, spec: KernelSpec, mode: str):
        self.module = module
        self.spec = spec
        self.gpu = mode == "gpu"
        self.ptr = ir.PointerType(addrspace=1) if self.gpu else ir.PointerType()
        self.n = spec.n_inputs
        self.dtypes = spec.inner.dtypes[: self.n]

    # --- entry points -----------------------------------------------------------------------------------------
    def _params(self, n_i64_head: int, n_ptrs: int, n_i64_tail: int) -> list:
        return [I64] * n_i64_head + [self.ptr] * n_ptrs + [I64] * n_i64_tail

    def _body(self, name: str, params: list) -> ir.Function:
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [I64] * 6 + params), name)
        fn.linkage = "internal"
        fn.attributes.add("alwaysinline")
        fn.attributes.add("nounwind")
        return fn

    def _entries(self, symbol: str, body: ir.Function, params: list) -> None:
        """The GPU kernel (sregs -> body) or the host wrapper (loops over the grid -> body)."""
        if self.gpu:
            fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), params), symbol)
            fn.calling_convention = "ptx_kernel"
            self._noalias(fn)
            b = ir.IRBuilder(fn.append_basic_block("entry"))
            regs = [self._sreg(b, r) for r in ("tid.x", "ntid.x", "ctaid.x", "nctaid.x", "ctaid.y", "nctaid.y")]
            b.call(body, [*regs, *fn.args])
            b.ret_void()
            return
        # host: the kernel itself (for a direct per-thread call) and the grid wrapper
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [I64] * 3 + params), f"{symbol}_grid")
        ntid, nx, ny, *args = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        one = _i64(1)

        def over_y(b, cy, _):
            def over_x(b, cx, _):
                def over_t(b, t, _):
                    b.call(body, [t, ntid, cx, nx, cy, ny, *args])
                    return []

                _loop(b, fn, _i64(0), ntid, one, [], over_t, "t")
                return []

            _loop(b, fn, _i64(0), nx, one, [], over_x, "x")
            return []

        _loop(b, fn, _i64(0), ny, one, [], over_y, "y")
        b.ret_void()

    @staticmethod
    def _noalias(fn: ir.Function) -> None:
        # every written buffer (output, partials, error word) is a fresh allocation no other argument points
        # into, so all pointers may be noalias: LLVM then reads the inputs through the read-only cache (ld.global.nc)
        for arg in fn.args:
            if isinstance(arg.type, ir.PointerType):
                arg.add_attribute("noalias")

    def _sreg(self, b: ir.IRBuilder, reg: str):
        name = f"llvm.nvvm.read.ptx.sreg.{reg}"
        fn = self.module.globals.get(name) or ir.Function(self.module, ir.FunctionType(I32, []), name)
        return b.zext(b.call(fn, []), I64)

    # --- shared pieces ------------------------------------------------------------------------------------------
    def _flag_errors(self, b: ir.IRBuilder, fn: ir.Function, errors: list, err_ptr) -> None:
        """Store 1 in ``err`` where numpy would raise (a branch: the word is written only then)."""
        if not errors:
            return
        cond = errors[0]
        for c in errors[1:]:
            cond = b.or_(cond, c)
        with b.if_then(cond, likely=False):
            b.store(ir.Constant(I32, 1), err_ptr)

    def _meta(self, args) -> tuple[list, list]:
        nd = self.spec.ndim
        return list(args[:nd]), [list(args[nd + k * nd : nd + (k + 1) * nd]) for k in range(self.n)]

    def _unravel(self, b: ir.IRBuilder, index, shape: list, strides: list, dims, offsets: list) -> list:
        for d in reversed(list(dims)):
            idx = b.urem(index, shape[d])
            index = b.udiv(index, shape[d])
            offsets = [b.add(off, b.mul(idx, st[d])) for st, off in zip(strides, offsets)]
        return offsets

    def _load_inputs(self, b: ir.IRBuilder, ptrs: list, offsets: list) -> list:
        return [
            load_value(b, b.gep(ptrs[k], [offsets[k]], source_etype=mem_type(self.dtypes[k])), self.dtypes[k])
            for k in range(self.n)
        ]

    # --- elementwise --------------------------------------------------------------------------------------------
    def contiguous(self) -> None:
        spec, n = self.spec, self.n
        params = self._params(1, n + 2, 0)
        body = self._body(f"{spec.name}_cbody", params)
        tid, ntid, cx, nx, _, _, count, *ptrs = body.args
        b = ir.IRBuilder(body.append_basic_block("entry"))
        start = b.add(b.mul(cx, ntid), tid)
        step = b.mul(nx, ntid)
        out_ty = mem_type(spec.inner.dtype)

        def element(b, i, _):
            offsets = [_i64(0) if spec.scalar_inputs[k] else i for k in range(n)]
            result, errors = emit_composite(b, spec.inner, self._load_inputs(b, ptrs, offsets), LOWER)
            store_value(b, result, b.gep(ptrs[n], [i], source_etype=out_ty), spec.inner.dtype)
            self._flag_errors(b, body, errors, ptrs[n + 1])
            return []

        _loop(b, body, start, count, step, [], element, "c")
        b.ret_void()
        self._entries(f"{spec.name}_c", body, params)

    def strided(self) -> None:
        spec, n, nd = self.spec, self.n, self.spec.ndim
        params = self._params(1, n + 2, nd + n * nd)
        body = self._body(f"{spec.name}_sbody", params)
        tid, ntid, cx, nx, _, _, count, *rest = body.args
        ptrs, (shape, strides) = rest[: n + 2], self._meta(rest[n + 2 :])
        b = ir.IRBuilder(body.append_basic_block("entry"))
        start = b.add(b.mul(cx, ntid), tid)
        step = b.mul(nx, ntid)
        out_ty = mem_type(spec.inner.dtype)

        def element(b, i, _):
            # each thread unravels its own index (threads of a warp read neighbouring elements: coalesced)
            offsets = self._unravel(b, i, shape, strides, range(nd), [_i64(0)] * n)
            result, errors = emit_composite(b, spec.inner, self._load_inputs(b, ptrs, offsets), LOWER)
            store_value(b, result, b.gep(ptrs[n], [i], source_etype=out_ty), spec.inner.dtype)
            self._flag_errors(b, body, errors, ptrs[n + 1])
            return []

        _loop(b, body, start, count, step, [], element, "s")
        b.ret_void()
        self._entries(f"{spec.name}_s", body, params)

    # --- reductions ---------------------------------------------------------------------------------------------
    # A reduction's state is a list of values: [accumulator], or [best value, its index] for argmax/argmin.
    @property
    def acc_dtype(self) -> str:
        return accumulator_dtype(self.spec.reduce, self.spec.out_dtype, self.spec.inner.dtype)

    @property
    def arg(self) -> bool:
        return self.spec.reduce in ("argmax", "argmin")

    @property
    def state_dtypes(self) -> list[str]:
        return [self.acc_dtype, "int64"] if self.arg else [self.acc_dtype]

    def _combine(self, b: ir.IRBuilder, acc: list, v: list) -> list:
        dt, r = self.acc_dtype, self.spec.reduce
        s = ScalarBuilder(b, (dt, dt), dt)
        if self.arg:
            # numpy: the first nan if there is one, else the first extreme; either side may come first
            (a, ia), (c, ic) = acc, v
            cmp = ScalarBuilder(b, (dt, dt), "bool")
            a_nan, c_nan = cmp.isnan(a), cmp.isnan(c)
            better = cmp.compare(">" if r == "argmax" else "<", c, a)
            tie = b.and_(b.not_(better), b.not_(cmp.compare("!=", c, a)))
            earlier = b.icmp_signed("<", ic, ia)
            both_nan = b.and_(a_nan, c_nan)
            neither = b.not_(b.or_(a_nan, c_nan))
            take = b.or_(
                b.and_(both_nan, earlier),
                b.or_(b.and_(c_nan, b.not_(a_nan)), b.and_(neither, b.or_(better, b.and_(tie, earlier)))),
            )
            return [b.select(take, c, a), b.select(take, ic, ia)]
        (acc,), (v,) = acc, v
        if r in ("max", "min"):
            return [s.maximum(acc, v) if r == "max" else s.minimum(acc, v)]
        if r == "all":
            return [b.and_(acc, v)]
        if r == "any":
            return [b.or_(acc, v)]
        if dt.startswith("float"):
            return [(b.fadd if r in ("sum", "mean") else b.fmul)(acc, v)]
        return [b.add(acc, v) if r in ("sum", "mean") else b.mul(acc, v)]

    def _ident(self) -> list:
        value = constant(self.acc_dtype, _identity(self.spec.reduce, self.acc_dtype))
        return [value, _i64(2**63 - 1)] if self.arg else [value]  # any element beats the identity on a tie

    def _load_state(self, b: ir.IRBuilder, ptrs: list, slot) -> list:
        return [load_value(b, b.gep(p, [slot], source_etype=mem_type(d)), d) for p, d in zip(ptrs, self.state_dtypes)]

    def _store_state(self, b: ir.IRBuilder, state: list, ptrs: list, slot) -> None:
        for v, p, d in zip(state, ptrs, self.state_dtypes):
            store_value(b, v, b.gep(p, [slot], source_etype=mem_type(d)), d)

    def reduction(self) -> None:
        self._partial_pass()
        self._final_pass()

    def _partial_pass(self) -> None:
        spec, n, nd = self.spec, self.n, self.spec.ndim
        k = nd - len(spec.axes)
        ns = len(self.state_dtypes)
        params = self._params(0, n + ns + 1, nd + n * nd)
        state_ty = ir.LiteralStructType([ir_type(d) for d in self.state_dtypes])
        # the per-thread partial: a grid-stride loop over this block-column's share of the reduced elements
        thread = ir.Function(self.module, ir.FunctionType(state_ty, [I64] * 3 + params), f"{spec.name}_rthread")
        thread.linkage = "internal"
        thread.attributes.add("alwaysinline")
        o, start, step, *rest = thread.args
        ptrs, (shape, strides) = rest[: n + ns + 1], self._meta(rest[n + ns + 1 :])
        err_ptr = ptrs[n + ns]
        b = ir.IRBuilder(thread.append_basic_block("entry"))
        reduced = _i64(1)
        for d in range(k, nd):
            reduced = b.mul(reduced, shape[d])
        base = self._unravel(b, o, shape, strides, range(k), [_i64(0)] * n)

        def element(b, j, acc):
            offsets = self._unravel(b, j, shape, strides, range(k, nd), base)
            value, errors = emit_composite(b, spec.inner, self._load_inputs(b, ptrs, offsets), LOWER)
            self._flag_errors(b, thread, errors, err_ptr)
            v = cast(b, value, spec.inner.dtype, self.acc_dtype)
            return self._combine(b, acc, [v, j] if self.arg else [v])

        state = _loop(b, thread, start, reduced, step, self._ident(), element, "r")
        packed = ir.Constant(state_ty, ir.Undefined)
        for i, v in enumerate(state):
            packed = b.insert_value(packed, v, i)
        b.ret(packed)

        n_outputs = ir.Function(self.module, ir.FunctionType(I64, [I64] * nd), f"{spec.name}_nout")
        n_outputs.linkage = "internal"
        nb = ir.IRBuilder(n_outputs.append_basic_block("entry"))
        total = _i64(1)
        for d in range(k):
            total = nb.mul(total, n_outputs.args[d])
        nb.ret(total)

        if self.gpu:
            self._gpu_partial(thread, n_outputs, params)
            return
        # host: the block's threads combined one after another (the GPU combines them by shuffles)
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [I64] * 3 + params), f"{spec.name}_rp_grid")
        ntid, nx, ny, *args = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        n_out = b.call(n_outputs, args[n + ns + 1 : n + ns + 1 + nd])
        one = _i64(1)

        def over_o(b, o, _):
            def over_x(b, cx, _):
                def over_t(b, t, acc):
                    start = b.add(b.mul(cx, ntid), t)
                    part = b.call(thread, [o, start, b.mul(nx, ntid), *args])
                    return self._combine(b, acc, [b.extract_value(part, i) for i in range(ns)])

                acc = _loop(b, fn, _i64(0), ntid, one, self._ident(), over_t, "t")
                self._store_state(b, acc, args[n : n + ns], b.add(b.mul(o, nx), cx))
                return []

            _loop(b, fn, _i64(0), nx, one, [], over_x, "x")
            return []

        _loop(b, fn, _i64(0), n_out, one, [], over_o, "o")
        b.ret_void()

    def _gpu_partial(self, thread: ir.Function, n_outputs: ir.Function, params: list) -> None:
        spec, n, nd = self.spec, self.n, self.spec.ndim
        ns = len(self.state_dtypes)
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), params), f"{spec.name}_rp")
        fn.calling_convention = "ptx_kernel"
        self._noalias(fn)
        args = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        tid, ntid, cx, nx, cy, ny = (
            self._sreg(b, r) for r in ("tid.x", "ntid.x", "ctaid.x", "nctaid.x", "ctaid.y", "nctaid.y")
        )
        smems = []
        for i, dtype in enumerate(self.state_dtypes):
            smem_ty = ir.ArrayType(mem_type(dtype), WARP)
            smem = ir.GlobalVariable(self.module, smem_ty, f"{spec.name}_smem{i}", addrspace=3)
            smem.linkage = "internal"
            smem.initializer = ir.Constant(smem_ty, ir.Undefined)
            smem.type = ir.PointerType(addrspace=3)  # opaque, so element GEPs type-check
            smems.append(smem)
        n_out = b.call(n_outputs, args[n + ns + 1 : n + ns + 1 + nd])
        start = b.add(b.mul(cx, ntid), tid)
        step = b.mul(nx, ntid)
        lane = b.and_(tid, _i64(WARP - 1))
        warp = b.lshr(tid, _i64(5))
        n_warps = b.lshr(b.add(ntid, _i64(WARP - 1)), _i64(5))

        def over_o(b, o, _):
            part = b.call(thread, [o, start, step, *args])
            acc = self._warp_reduce(b, [b.extract_value(part, i) for i in range(ns)])
            with b.if_then(b.icmp_unsigned("==", lane, _i64(0))):
                self._store_state(b, acc, smems, warp)
            self._barrier(b)
            with b.if_then(b.icmp_unsigned("==", warp, _i64(0))):
                inside = b.icmp_unsigned("<", lane, n_warps)
                loaded = self._load_state(b, smems, b.select(inside, lane, _i64(0)))
                v = self._warp_reduce(b, [b.select(inside, x, e) for x, e in zip(loaded, self._ident())])
                with b.if_then(b.icmp_unsigned("==", lane, _i64(0))):
                    self._store_state(b, v, args[n : n + ns], b.add(b.mul(o, nx), cx))
            self._barrier(b)  # the shared words are reused by the next output
            return []

        _loop(b, fn, cy, n_out, ny, [], over_o, "o")
        b.ret_void()

    def _barrier(self, b: ir.IRBuilder) -> None:
        name = "llvm.nvvm.barrier0"
        fn = self.module.globals.get(name) or ir.Function(self.module, ir.FunctionType(ir.VoidType(), []), name)
        b.call(fn, [])

    def _warp_reduce(self, b: ir.IRBuilder, acc: list) -> list:
        for delta in (16, 8, 4, 2, 1):
            acc = self._combine(b, acc, [self._shuffle_down(b, v, delta) for v in acc])
        return acc

    def _shuffle_down(self, b: ir.IRBuilder, v, delta: int):
        """``shfl.sync.down`` of any scalar: floats by their bits, 64-bit values as two 32-bit halves."""
        name = "llvm.nvvm.shfl.sync.down.i32"
        fn = self.module.globals.get(name) or ir.Function(self.module, ir.FunctionType(I32, [I32] * 4), name)

        def shfl(word):
            return b.call(fn, [ir.Constant(I32, -1), word, ir.Constant(I32, delta), ir.Constant(I32, WARP - 1)])

        ty = v.type
        width = ty.width if isinstance(ty, ir.IntType) else {"half": 16, "float": 32, "double": 64}[str(ty)]
        bits = v if isinstance(ty, ir.IntType) else b.bitcast(v, ir.IntType(width))
        if width == 64:
            lo = shfl(b.trunc(bits, I32))
            hi = shfl(b.trunc(b.lshr(bits, _i64(32)), I32))
            out = b.or_(b.zext(lo, I64), b.shl(b.zext(hi, I64), _i64(32)))
        elif width == 32:
            out = shfl(bits)
        else:
            out = b.trunc(shfl(b.zext(bits, I32)), ir.IntType(width))
        return out if isinstance(ty, ir.IntType) else b.bitcast(out, ty)

    def _final_pass(self) -> None:
        spec = self.spec
        ns = len(self.state_dtypes)
        params = self._params(3, ns + 1, 0)
        body = self._body(f"{spec.name}_rfbody", params)
        tid, ntid, cx, nx, _, _, n_out, parts, count, *ptrs = body.args
        partials, out = ptrs[:ns], ptrs[ns]
        b = ir.IRBuilder(body.append_basic_block("entry"))
        out_mem = mem_type(spec.out_dtype)

        def output(b, o, _):
            def part(b, p, acc):
                return self._combine(b, acc, self._load_state(b, partials, b.add(b.mul(o, parts), p)))

            acc = _loop(b, body, _i64(0), parts, _i64(1), self._ident(), part, "p")
            if self.arg:
                result = cast(b, acc[1], "int64", spec.out_dtype)
            else:
                result = acc[0]
                if spec.reduce == "mean" and self.acc_dtype.startswith("float"):
                    result = b.fdiv(result, b.sitofp(count, result.type))
                result = cast(b, result, self.acc_dtype, spec.out_dtype)
            store_value(b, result, b.gep(out, [o], source_etype=out_mem), spec.out_dtype)
            return []

        _loop(b, body, b.add(b.mul(cx, ntid), tid), n_out, b.mul(nx, ntid), [], output, "f")
        b.ret_void()
        self._entries(f"{spec.name}_rf", body, params)


class _MatmulDriver(_Driver):
    """The matmul kernel of a :class:`MatmulSpec` (see the module docstring). No shared memory and no barrier:
    every thread's work is independent, so the host simulation (threads run one after another) checks exactly
    the GPU's indexing and arithmetic; the operands' reuse comes from the L1/read-only cache."""

    def __init__(self, module: ir.Module, spec: MatmulSpec, mode: str):
        self.module = module
        self.spec = spec
        self.gpu = mode == "gpu"
        self.ptr = ir.PointerType(addrspace=1) if self.gpu else ir.PointerType()

    def matmul(self) -> None:
        spec = self.spec
        tm, tn, n_tx = spec.layout
        params = self._params(3, 3, 4)
        body = self._body(f"{spec.name}_mmbody", params)
        tid, ntid, cx, nx, cy, ny, m, n, k, a, bp, out, sa_m, sa_k, sb_k, sb_n = body.args
        b = ir.IRBuilder(body.append_basic_block("entry"))
        ty = ir_type(spec.dtype)
        fma = self._fmuladd(ty)
        tx, trow = b.urem(tid, _i64(n_tx)), b.udiv(tid, _i64(n_tx))
        n_trows = b.udiv(ntid, _i64(n_tx))
        tile_m, tile_n = b.mul(n_trows, _i64(tm)), _i64(n_tx * tn)
        tiles_m = b.udiv(b.add(m, b.sub(tile_m, _i64(1))), tile_m)
        tiles_n = b.udiv(b.add(n, _i64(n_tx * tn - 1)), tile_n)
        last_m, last_n = b.sub(m, _i64(1)), b.sub(n, _i64(1))
        zero = ir.Constant(ty, 0.0)

        def umin(x, y):
            return b.select(b.icmp_unsigned("<", x, y), x, y)

        def over_rows(b, bm, _):
            def over_cols(b, bn, _):
                rows = [b.add(b.mul(bm, tile_m), b.add(trow, b.mul(n_trows, _i64(i)))) for i in range(tm)]
                cols = [b.add(b.mul(bn, tile_n), b.add(tx, _i64(n_tx * j))) for j in range(tn)]
                # out-of-range rows/columns read the last one (valid memory, no branch in the loop), never stored
                a_rows = [b.mul(umin(r, last_m), sa_m) for r in rows]
                b_cols = [b.mul(umin(c, last_n), sb_n) for c in cols]

                def step(b, kk, acc):
                    ak, bk = b.mul(kk, sa_k), b.mul(kk, sb_k)
                    av = [b.load(b.gep(a, [b.add(r, ak)], source_etype=ty), typ=ty) for r in a_rows]
                    bv = [b.load(b.gep(bp, [b.add(bk, c)], source_etype=ty), typ=ty) for c in b_cols]
                    return [b.call(fma, [av[i], bv[j], acc[i * tn + j]]) for i in range(tm) for j in range(tn)]

                acc = _loop(b, body, _i64(0), k, _i64(1), [zero] * (tm * tn), step, "k")
                for j, c in enumerate(cols):
                    col_in = b.icmp_unsigned("<", c, n)
                    for i, r in enumerate(rows):
                        with b.if_then(b.and_(col_in, b.icmp_unsigned("<", r, m))):
                            b.store(acc[i * tn + j], b.gep(out, [b.add(b.mul(r, n), c)], source_etype=ty))
                return []

            _loop(b, body, cx, tiles_n, nx, [], over_cols, "n")
            return []

        _loop(b, body, cy, tiles_m, ny, [], over_rows, "m")
        b.ret_void()
        self._entries(f"{spec.name}_mm", body, params)

    def _fmuladd(self, ty: ir.Type) -> ir.Function:
        name = f"llvm.fmuladd.{'f32' if str(ty) == 'float' else 'f64'}"
        return self.module.globals.get(name) or ir.Function(self.module, ir.FunctionType(ty, [ty] * 3), name)


__all__ = [
    "GPU_REDUCTIONS", "GPU_TRIPLE", "TILE", "TX", "MatmulSpec", "build_cuda_module", "gpu_buildable", "kernel_symbols",
]  # fmt: skip
