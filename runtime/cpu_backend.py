"""The LLVM CPU backend: elementwise and fused nodes become JIT-compiled kernels; other ops run through numpy.

``CpuProgram(inputs, outputs)`` has the interface of :class:`~sympile.runtime.interpreter.NumpyProgram`:
``run(inputs, shared) -> outputs``, ``shared_nodes`` and ``kernels`` (each with ``.name``, ``.llvm_ir``,
``.asm``). Nodes without an LLVM lowering run their numpy reference in the schedule; they are listed in
``fallback_nodes`` (``debugprint`` marks them).

All kernels of a program live in one LLVM module, optimized at O3 for the host CPU. Its object code is cached on
disk keyed by the canonical graph text, the target and the versions; a program built again in the same process
(same structure, new variables) reuses the loaded code from memory.

>>> import numpy as np
>>> from sympile.compiler.graph import input_node, make_node
>>> x = input_node("float64", (None,), name="x")
>>> p = CpuProgram([x], [make_node("exp", [x])])
>>> p.run([np.zeros(3)], [])[0]
array([1., 1., 1.])
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from sympile.compiler.errors import GraphValueError
from sympile.compiler.graph import Node, canonical_text, toposort
from sympile.compiler.llvm import target as llvm_target
from sympile.compiler.llvm.kernels import KernelSpec, build_module, lowerable
from sympile.compiler.ops.fused import FUSIBLE_REDUCTIONS, Composite
from sympile.compiler.optable import OPS
from sympile.compiler.types import broadcast_shapes, shape_str

from .cache import MemoryCache, cache_key, default_disk_cache, default_versions, memory_key
from .interpreter import leaf_value, run_node

#: bump when the generated code changes, so stale cached objects are never loaded
CODEGEN_VERSION = "cpu-kernels-1"
#: reductions with a native kernel (``var``, ``std`` and ``logsumexp`` run through numpy)
NATIVE_REDUCTIONS = (*FUSIBLE_REDUCTIONS, "argmax", "argmin")
#: below this many elements a kernel runs on the calling thread (a thread hand-off costs ~10-50 us)
PARALLEL_MIN_ELEMENTS = 1 << 16

_KERNEL_FN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_LIBRARIES = MemoryCache()


# --- threads --------------------------------------------------------------------------------------------------
def num_threads() -> int:
    """``SYMPILE_NUM_THREADS`` if set, else the number of CPUs (read at each call: cheap, and tests change it)."""
    return _parse_threads(os.environ.get("SYMPILE_NUM_THREADS"))


@functools.cache
def _parse_threads(value: str | None) -> int:
    try:
        return max(1, int(value)) if value else (os.cpu_count() or 1)
    except ValueError:
        raise ValueError(f"SYMPILE_NUM_THREADS must be a positive integer, got {value!r}") from None


_pool_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(n: int) -> ThreadPoolExecutor:
    with _pool_lock:
        pool = _pools.get(n)
        if pool is None:
            pool = _pools[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="sympile")
        return pool


def _launch(fn, total: int, args: int, work: int, align: int) -> int:
    """Call ``fn(start, stop, args)`` over ``[0, total)``, split across threads when ``work`` is large.

    ctypes releases the GIL during the call, so the ranges run in parallel. Returns the OR of the results.
    """
    if work < PARALLEL_MIN_ELEMENTS or total < 2:
        return fn(0, total, args)
    n = num_threads()
    if n == 1:
        return fn(0, total, args)
    n = min(n, total)
    step = -(-total // n)
    step = -(-step // align) * align
    bounds = [(s, min(s + step, total)) for s in range(step, total, step)]
    futures = [_pool(n).submit(fn, lo, hi, args) for lo, hi in bounds]
    status = fn(0, min(step, total), args)  # the calling thread takes the first range
    for f in futures:
        status |= f.result()
    return status


# --- compiled code --------------------------------------------------------------------------------------------
class Kernel:
    """A compiled kernel: ``name``, and (built on first access) ``llvm_ir`` (optimized IR) and ``asm``."""

    def __init__(self, spec: KernelSpec, node: Node):
        self.spec = spec
        self.name = spec.name
        self.expression = node.attrs["inner"].describe() if node.op.startswith("fused") else node.op

    @functools.cached_property
    def _module(self):
        mod = llvm_target.parse_and_verify(str(build_module([self.spec], self.name)))
        return llvm_target.optimize(mod)

    @functools.cached_property
    def llvm_ir(self) -> str:
        return str(self._module)

    @functools.cached_property
    def asm(self) -> str:
        return llvm_target.emit_asm(self._module)

    def __repr__(self):
        return f"<Kernel {self.name}: {self.expression}>"


@dataclass
class _Library:
    """A loaded object: its JIT library (kept alive while the functions may run) and the entry points."""

    jit: object
    functions: dict


@functools.cache
def codegen_fingerprint() -> str:
    """A hash of the code generator's sources, so an edited lowering never loads stale cached objects."""
    from sympile.compiler import llvm as llvm_pkg  # noqa: PLC0415
    from sympile.compiler.ops import elementwise  # noqa: PLC0415

    h = hashlib.blake2b(CODEGEN_VERSION.encode(), digest_size=8)
    folder = os.path.dirname(llvm_pkg.__file__)
    for path in sorted(os.listdir(folder)) + [elementwise.__file__]:
        full = os.path.join(folder, path)
        if full.endswith(".py"):
            with open(full, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


@functools.cache
def _versions() -> dict:
    # importlib.metadata (behind default_versions) costs ~15 ms to import: use the modules' own versions
    import llvmlite  # noqa: PLC0415

    import sympile  # noqa: PLC0415

    version = getattr(sympile, "__version__", None)
    if version is None:
        return default_versions()
    return {"sympile": version, "llvmlite": llvmlite.__version__}


@functools.cache
def _target_fields() -> dict:
    triple, cpu, features = llvm_target.target_key()
    return {"triple": triple, "cpu": cpu, "features": features, "codegen": codegen_fingerprint()}


def _compile(specs: list[KernelSpec], key_text: str) -> _Library:
    target = _target_fields()
    mkey = memory_key(key_text, target)
    lib = _LIBRARIES.get(mkey)
    if lib is not None:
        return lib

    def build() -> bytes:
        mod = llvm_target.parse_and_verify(str(build_module(specs)))
        return llvm_target.emit_object(llvm_target.optimize(mod))

    obj = default_disk_cache().get_or_build(cache_key(key_text, target, _versions()), build)
    symbols = [s for spec in specs for s in spec.symbols]
    jit = llvm_target.load_object(obj, symbols)
    lib = _Library(jit, {s: _KERNEL_FN(jit.address(s)) for s in symbols})
    _LIBRARIES.put(mkey, lib)
    return lib


# --- schedule -------------------------------------------------------------------------------------------------
def _static_scalar(node: Node) -> bool:
    return all(d == 1 for d in node.shape)


def composite_of(node: Node) -> tuple[Composite, list[Node]] | None:
    """The Composite a node computes and the nodes it reads, or ``None`` if it has no LLVM lowering.

    A single elementwise node is a one-step composite (scalar constants inlined, as fusion does); a plain
    reduction reduces the identity composite of its input.
    """
    if node.op in ("fused", "fused_reduce"):
        inner = node.attrs["inner"]
        return (inner, list(node.inputs)) if lowerable(inner) else None
    if node.op in NATIVE_REDUCTIONS:
        (x,) = node.inputs
        return Composite(1, (), (x.dtype,)), [x]
    if OPS[node.op].kind != "elemwise":
        return None
    inputs = [i for i in dict.fromkeys(node.inputs) if not (i.op == "constant" and i.ndim == 0)]
    slot = {id(i): k for k, i in enumerate(inputs)}
    steps, dtypes = [], [i.dtype for i in inputs]
    for i in node.inputs:
        if id(i) not in slot:
            slot[id(i)] = len(inputs) + len(steps)
            steps.append(("constant", (), (("value", i.attrs["value"]), ("weak", bool(i.attrs.get("weak"))))))
            dtypes.append(i.dtype)
    steps.append((node.op, tuple(slot[id(i)] for i in node.inputs), tuple(sorted(node.attrs.items()))))
    inner = Composite(len(inputs), tuple(steps), tuple(dtypes) + (node.dtype,))
    return (inner, inputs) if lowerable(inner) else None


def kernel_spec(node: Node, name: str) -> tuple[KernelSpec, list[Node]] | None:
    """The kernel for ``node`` (elementwise, fused, or a reduction with its fused producers), or ``None``."""
    found = composite_of(node)
    if found is None:
        return None
    inner, reads = found
    scalar = tuple(_static_scalar(i) for i in reads)
    if node.op not in NATIVE_REDUCTIONS and node.op != "fused_reduce":
        return KernelSpec(name, inner, scalar, node.ndim), reads
    reduce = node.attrs.get("reduce", node.op)
    ndim = len(broadcast_shapes(*(i.shape for i in reads)))
    axes = tuple(range(ndim)) if node.attrs["axis"] is None else tuple(node.attrs["axis"])
    if not axes:
        return None  # nothing reduced: numpy's reference is a copy
    return KernelSpec(name, inner, scalar, ndim, reduce, axes, node.dtype), reads


class _KernelStep:
    """Runs one kernel node: allocate the output, pick the contiguous or strided entry point, launch."""

    def __init__(self, node: Node, inputs: list[Node], spec: KernelSpec, lib: _Library):
        self.node = node
        self.inputs = inputs
        self.spec = spec
        self.dtype = np.dtype(spec.inner.dtype)
        self.scalar = spec.scalar_inputs
        self.contiguous = lib.functions[f"{spec.name}_c"]
        self.strided = lib.functions.get(f"{spec.name}_s")

    def run(self, env: dict):
        return self.compute([_operand(env[id(i)]) for i in self.inputs])

    def compute(self, arrays: list) -> np.ndarray:
        shapes = [a.shape for a in arrays] or [()]  # no array input: every input was an inlined scalar constant
        shape = shapes[0]
        for other in shapes:
            if other != shape:
                shape = _broadcast(self.node, shapes)
                break
        # the contiguous entry serves inputs that are all C-contiguous, or all Fortran-contiguous (transposes):
        # then the output takes the same layout, as numpy's ufuncs do, and memory order is the loop order
        c_order = f_order = True
        for scalar, a in zip(self.scalar, arrays):
            if not scalar:
                if a.shape != shape:
                    c_order = f_order = False
                    break
                flags = a.flags
                c_order = c_order and flags.c_contiguous
                f_order = f_order and flags.f_contiguous
        out = np.empty(shape, self.dtype, order="F" if f_order and not c_order else "C")
        size = out.size
        if size == 0:
            return out
        ptrs = [data_pointer(a) for a in arrays]
        out_ptr = data_pointer(out)
        if c_order or f_order:
            words = (ctypes.c_int64 * (len(ptrs) + 1))(*ptrs, out_ptr)
            status = _launch(self.contiguous, size, ctypes.addressof(words), size, 64)
        else:
            nd = len(shape)
            strides = [_element_strides(a, nd) for a in arrays]
            order = _loop_order(shape, strides)
            if order is not None:
                # walk memory in the order of the largest input (numpy's order='K'): the output is allocated in
                # that order too, so it and that input stream contiguously
                out = np.empty(tuple(shape[d] for d in order), self.dtype)
                out_ptr = data_pointer(out)
                shape = out.shape
                strides = [[st[d] for d in order] for st in strides]
                out = out.transpose(np.argsort(order))
            dims, strides = collapse_dims(shape, strides)
            flat = [s for st in strides for s in st]
            words = (ctypes.c_int64 * (len(ptrs) + 1 + nd + len(flat)))(*ptrs, out_ptr, *dims, *flat)
            rows = size // dims[-1]
            status = _launch(self.strided, rows, ctypes.addressof(words), size, 1)
        if status:
            raise GraphValueError(f"{self.node.describe()}: Integers to negative integer powers are not allowed.")
        return out


class _ReduceStep:
    """Runs one reduction kernel: the kept axes first, the reduced ones last, one output element per range."""

    def __init__(self, node: Node, inputs: list[Node], spec: KernelSpec, lib: _Library):
        self.node = node
        self.inputs = inputs
        self.spec = spec
        self.dtype = np.dtype(spec.out_dtype)
        self.fn = lib.functions[f"{spec.name}_r"]
        self.keepdims = node.attrs["keepdims"]

    def run(self, env: dict):
        arrays = [_operand(env[id(i)]) for i in self.inputs]
        shapes = [a.shape for a in arrays]
        shape = shapes[0] if all(s == shapes[0] for s in shapes) else _broadcast(self.node, shapes)
        axes = self.spec.axes
        reduced = 1
        for a in axes:
            reduced *= shape[a]
        if reduced == 0 and self.spec.reduce in ("max", "min", "argmax", "argmin"):
            return run_node(self.node, arrays)  # numpy's error: a zero-size array has no maximum
        n_out = 1
        for d in range(len(shape)):
            n_out *= 1 if d in axes else shape[d]
        threads = num_threads()
        splittable = self.spec.reduce not in ("argmax", "argmin")
        if splittable and threads > 1 and n_out < threads and n_out * reduced >= PARALLEL_MIN_ELEMENTS:
            return self._split(arrays, shape, threads)
        return self._reduce(arrays, shape, parallel=True)

    def _reduce(self, arrays: list, shape: tuple, parallel: bool) -> np.ndarray:
        axes = self.spec.axes
        nd = len(shape)
        kept = [d for d in range(nd) if d not in axes]
        out_shape = tuple(1 if d in axes else shape[d] for d in range(nd) if self.keepdims or d not in axes)
        out = np.empty(out_shape, self.dtype)
        if out.size == 0:
            return out
        perm = kept + list(axes)
        strides = []
        for a in arrays:
            st = _element_strides(a, nd)
            strides += [st[d] for d in perm]
        ptrs = [data_pointer(a) for a in arrays]
        meta = [*ptrs, data_pointer(out), *(shape[d] for d in perm), *strides]
        words = (ctypes.c_int64 * len(meta))(*meta)
        if parallel:
            status = _launch(self.fn, out.size, ctypes.addressof(words), out.size * int(np.prod(shape)), 1)
        else:
            status = self.fn(0, out.size, ctypes.addressof(words))
        if status:
            raise GraphValueError(f"{self.node.describe()}: Integers to negative integer powers are not allowed.")
        return out

    def _split(self, arrays: list, shape: tuple, threads: int) -> np.ndarray:
        """Few outputs over many elements: reduce slices of the longest reduced axis in parallel, then combine
        the partial results (each is numpy's reduction of its slice, so the combination is numpy's too)."""
        nd = len(shape)
        axis = max(self.spec.axes, key=lambda a: shape[a])
        length = shape[axis]
        step = -(-length // threads)
        parts = []
        for lo in range(0, length, step):
            hi = min(lo + step, length)
            sub = []
            for a in arrays:
                ax = axis - (nd - a.ndim)
                if ax >= 0 and a.shape[ax] != 1:
                    index = [slice(None)] * a.ndim
                    index[ax] = slice(lo, hi)
                    a = a[tuple(index)]
                sub.append(a)
            sub_shape = shape[:axis] + (hi - lo,) + shape[axis + 1 :]
            parts.append((sub, sub_shape, hi - lo))
        futures = [_pool(threads).submit(self._reduce, sub, sub_shape, False) for sub, sub_shape, _ in parts[1:]]
        results = [self._reduce(parts[0][0], parts[0][1], False)] + [f.result() for f in futures]
        stacked = np.stack(results)
        reduce = self.spec.reduce
        with np.errstate(all="ignore"):
            if reduce == "mean":
                weights = np.array([n for _, _, n in parts], dtype=stacked.dtype).reshape(
                    (-1,) + (1,) * (stacked.ndim - 1)
                )
                return (np.sum(stacked * weights, axis=0) / length).astype(self.dtype)
            combine = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "all": np.all, "any": np.any}
            return np.asarray(combine[reduce](stacked, axis=0), dtype=self.dtype)


def collapse_dims(shape: tuple, strides: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Merge dimensions that every operand (and the C-contiguous output) walks as one, drop size-1 ones, and
    pad back to the same rank with leading size-1 dimensions: the kernel's inner loop gets as long as it can.

    >>> collapse_dims((2, 3, 4), [[12, 4, 1], [0, 0, 1]])
    ([1, 6, 4], [[0, 4, 1], [0, 0, 1]])
    """
    nd = len(shape)
    out_strides, step = [0] * nd, 1
    for d in range(nd - 1, -1, -1):
        out_strides[d], step = step, step * shape[d]
    operands = [*strides, out_strides]
    dims: list[int] = []
    merged: list[list[int]] = [[] for _ in operands]
    for d in range(nd):
        if shape[d] == 1:
            continue
        if dims and all(m[-1] == st[d] * shape[d] for m, st in zip(merged, operands)):
            dims[-1] *= shape[d]
            for m, st in zip(merged, operands):
                m[-1] = st[d]
            continue
        dims.append(shape[d])
        for m, st in zip(merged, operands):
            m.append(st[d])
    pad = nd - len(dims)
    return [1] * pad + dims, [[0] * pad + m for m in merged[:-1]]


def _find_data_offset() -> int | None:
    """Where ndarray objects keep their data pointer (numpy's public PyArrayObject_fields: after the object
    header), checked on live arrays and views; ``None`` if not found (then the slower documented way is used)."""
    base = np.arange(16.0)
    probes = [base, base[3:], base[::-2], np.empty((2, 3), np.int8)[1:]]
    for offset in range(8, 65, 8):
        if all(ctypes.c_int64.from_address(id(p) + offset).value == p.__array_interface__["data"][0] for p in probes):
            return offset
    return None


_DATA_OFFSET = _find_data_offset()
_word_at = ctypes.c_int64.from_address


def data_pointer(a: np.ndarray) -> int:
    """The address of ``a``'s first element: 5x cheaper than ``a.__array_interface__`` (0.3 vs 1.4 us), which
    matters for the per-call cost of small arrays.

    >>> a = np.zeros(4)
    >>> data_pointer(a[1:]) - data_pointer(a)
    8
    """
    if _DATA_OFFSET is None:
        return a.__array_interface__["data"][0]
    return _word_at(id(a) + _DATA_OFFSET).value


def _loop_order(shape: tuple, strides: list[list[int]]) -> list[int] | None:
    """The axis order (outermost first) in which the operand with the most distinct elements is walked in
    memory order, or ``None`` if that is the C order already.

    >>> _loop_order((3, 4), [[1, 3], [4, 1]])  # a transposed input first
    [1, 0]
    """

    def distinct(st):
        return sum(1 for s, d in zip(st, shape) if s != 0 and d != 1)

    lead = max(strides, key=distinct, default=None)
    if lead is None:
        return None
    order = sorted(range(len(shape)), key=lambda d: -abs(lead[d]) if shape[d] != 1 else 0)
    return None if order == sorted(order) else order


def _element_strides(a: np.ndarray, nd: int) -> list[int]:
    """``a``'s strides in elements, left-padded to rank ``nd``; 0 along broadcast (size-1) dimensions."""
    item = a.itemsize
    return [0] * (nd - a.ndim) + [0 if d == 1 else s // item for s, d in zip(a.strides, a.shape)]


def _broadcast(node: Node, shapes) -> tuple:
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        listed, shown = ", ".join(shape_str(s) for s in shapes), " ".join(shape_str(s) for s in shapes)
        # the interpreter's wording around numpy's own message, so both backends fail alike
        raise GraphValueError(
            f"{node.describe()} failed on inputs of shapes {listed}: "
            f"operands could not be broadcast together with shapes {shown}"
        ) from None


def _operand(value) -> np.ndarray:
    """An array the kernels can read: native byte order, aligned, strides a multiple of the item size."""
    a = value if type(value) is np.ndarray else np.asarray(value)
    flags = a.flags
    if flags.c_contiguous and flags.aligned and a.dtype.isnative:
        return a
    if not (flags.aligned and a.dtype.isnative) or any(s % a.itemsize for s in a.strides):
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
    return a


class CpuProgram:
    """Compiled form of a graph for the CPU backend (see the module docstring)."""

    def __init__(self, inputs: list[Node], outputs: list[Node]):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.order = toposort(outputs)
        self.shared_nodes = [n for n in self.order if n.op == "shared"]
        self.fallback_nodes: list[Node] = []
        self._library: _Library | None = None
        planned: list[tuple[Node, list[Node], KernelSpec]] = []
        for node in self.order:
            if node.is_leaf:
                continue
            found = kernel_spec(node, f"k{len(planned)}")
            if found is None:
                self.fallback_nodes.append(node)
                continue
            spec, reads = found
            planned.append((node, reads, spec))
        self.kernels: list[Kernel] = []
        self._steps: dict[int, _KernelStep] = {}
        if planned:
            key_text = canonical_text(self.outputs, self.inputs)
            prefix = "sp" + hashlib.blake2b(key_text.encode(), digest_size=6).hexdigest() + "_"
            specs = [dataclasses.replace(s, name=prefix + s.name) for _, _, s in planned]
            lib = _compile(specs, key_text)
            self._library = lib  # the JIT code lives as long as this reference (the memory cache may drop it)
            for (node, reads, _), spec in zip(planned, specs):
                step = _ReduceStep if spec.reduce else _KernelStep
                self._steps[id(node)] = step(node, reads, spec, lib)
                self.kernels.append(Kernel(spec, node))
        self.fallback = {id(n) for n in self.fallback_nodes}
        # the per-call plan, prepared once: what to compute, in order, and the values known in advance
        self._input_ids = [id(n) for n in self.inputs]
        self._shared_ids = [id(n) for n in self.shared_nodes]
        self._constants = {id(n): leaf_value(n) for n in self.order if n.op == "constant"}
        bound = set(self._input_ids)
        self._unbound = [n for n in self.order if n.op == "input" and id(n) not in bound]
        self._plan = [(id(n), self._steps.get(id(n)), n) for n in self.order if not n.is_leaf]

    def run(self, inputs: list, shared: list) -> list:
        env = dict(self._constants)
        env.update(zip(self._input_ids, inputs))
        env.update(zip(self._shared_ids, shared))
        if self._unbound:
            raise GraphValueError(f"no value for input {self._unbound[0].describe()}")
        for key, step, node in self._plan:
            if step is not None:
                env[key] = step.run(env)
            else:
                with np.errstate(all="ignore"):  # numpy's values (inf, nan), without warnings
                    env[key] = run_node(node, [env[id(i)] for i in node.inputs])
        return [np.asarray(env[id(o)]) for o in self.outputs]
