"""The LLVM CPU backend: elementwise and fused nodes become JIT-compiled kernels; other ops run through numpy.

``CpuProgram(inputs, outputs)`` has the interface of :class:`~sympile.runtime.interpreter.NumpyProgram`:
``run(inputs, shared) -> outputs``, ``shared_nodes`` and ``kernels`` (each with ``.name``, ``.llvm_ir``,
``.asm``). Nodes without an LLVM lowering run their numpy reference in the schedule; they are listed in
``fallback_nodes`` (``debugprint`` marks them).

All kernels of a program live in one LLVM module, optimized at O3 for the host CPU. Its object code is cached on
disk keyed by the canonical graph text, the target and the versions; a program built again in the same process
(same structure, new variables) reuses the loaded code from memory.

A call runs the schedule step by step (in a locality order: compiler/order.py); from the second call with an
argument layout on, the whole call is one native call (replay.py). An SGD update ``W - lr*(A @ B)`` runs as one
BLAS gemm into an early copy of ``W`` (_GemmUpdateStep).

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
import math
import os
import sys
import threading
from dataclasses import dataclass

import numpy as np

from sympile.compiler.affine import affine_form
from sympile.compiler.errors import GraphValueError
from sympile.compiler.graph import Node, canonical_text, toposort
from sympile.compiler.kernelspec import ROW_DTYPES, ROW_OPS, KernelSpec, node_kernel_spec, schedule_kernels
from sympile.compiler.layout import collapse_dims
from sympile.compiler.ops.fused import FUSIBLE_REDUCTIONS, Composite
from sympile.compiler.optable import OPS
from sympile.compiler.order import locality_order

from . import replay
from .blas import ROW_MAJOR, gemm_address, gemm_function, operand_layout
from .cache import MemoryCache, cache_key, default_disk_cache, default_versions, memory_key
from .host import cpu_fingerprint
from .interpreter import broadcast_or_raise, leaf_value, run_node
from .pointers import DATA_OFFSET as _DATA_OFFSET
from .pointers import data_pointer

#: bump when the generated code changes, so stale cached objects are never loaded
CODEGEN_VERSION = "cpu-kernels-1"
#: reductions with a native kernel (``var``, ``std`` and ``logsumexp`` have row kernels: rows.py)
NATIVE_REDUCTIONS = (*FUSIBLE_REDUCTIONS, "argmax", "argmin")
#: a reduction over leading axes keeping at least this many contiguous columns adds whole rows (kernels.py ``_o``)
OUTER_MIN_COLUMNS = 16
#: below this many elements a kernel runs on the calling thread. A hand-off costs ~10-50 us, and right after a BLAS
#: call OpenBLAS's spinning worker holds the other core, so W4's 131k- and 401k-element kernels were measured slower
#: split in two (tanh 236 vs 186 us, the weight update 169 vs 121 us) than on one thread
PARALLEL_MIN_ELEMENTS = 1 << 19

_KERNEL_FN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
#: the same entry called without releasing the GIL: 0.4 us a call instead of 0.8, for kernels that finish at once
_SMALL_KERNEL_FN = ctypes.PYFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
#: below this many elements a kernel keeps the GIL (at most ~15 us of float64 math; a release and reacquire
#: costs ~1 us and the longer entry path ~3 us: a 10k-element float32 add took 6.1 us with it, 3.4 without)
SMALL_ELEMENTS = 1 << 14
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
_pools: dict = {}


def _pool(n: int):
    """The ThreadPoolExecutor with ``n`` workers (concurrent.futures loads on first use: ~4 ms at start-up)."""
    with _pool_lock:
        pool = _pools.get(n)
        if pool is None:
            from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

            pool = _pools[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="sympile")
        return pool


def _wait(futures) -> None:
    import concurrent.futures  # noqa: PLC0415  (loaded with the pool, on first use)

    concurrent.futures.wait(futures)


def _splits(total: int, work: int) -> bool:
    """Whether _launch splits a kernel call over ``[0, total)`` doing ``work`` across threads."""
    return work >= PARALLEL_MIN_ELEMENTS and total >= 2 and num_threads() > 1


def _call_kernel(fn, total: int, words, arrays: list, node: Node, work: int, align: int) -> int:
    """``_launch(fn, total, words, work, align)``, first telling the Recorder of a call being captured on this
    thread (replay.py), if any: ``words`` is a ctypes array whose first words point into ``arrays`` (the
    inputs, then the output)."""
    rec = replay.recorder()
    if rec is not None:
        if _splits(total, work):
            rec.fail("a kernel split across threads")
        else:
            rec.kernel(fn, total, words, arrays, node)
    return _launch(fn, total, ctypes.addressof(words), work, align)


def _launch(fn, total: int, args: int, work: int, align: int) -> int:
    """Call ``fn(start, stop, args)`` over ``[0, total)``, split across threads when ``work`` is large.

    ctypes releases the GIL during the call, so the ranges run in parallel. Returns the OR of the results.
    """
    if not _splits(total, work):
        return fn(0, total, args)
    n = num_threads()
    n = min(n, total)
    step = -(-total // n)
    step = -(-step // align) * align
    bounds = [(s, min(s + step, total)) for s in range(step, total, step)]
    futures = [_pool(n).submit(fn, lo, hi, args) for lo, hi in bounds]
    try:
        status = fn(0, min(step, total), args)  # the calling thread takes the first range
    finally:
        # even on KeyboardInterrupt, no worker may outlive the argument buffer and arrays it reads
        _wait(futures)
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
        from sympile.compiler.llvm import target as llvm_target  # noqa: PLC0415  (LLVM loads on first use)
        from sympile.compiler.llvm.kernels import build_module  # noqa: PLC0415

        mod = llvm_target.parse_and_verify(str(build_module([self.spec], self.name)))
        return llvm_target.optimize(mod)

    @functools.cached_property
    def llvm_ir(self) -> str:
        return str(self._module)

    @functools.cached_property
    def asm(self) -> str:
        from sympile.compiler.llvm import target as llvm_target  # noqa: PLC0415

        return llvm_target.emit_asm(self._module)

    def __repr__(self):
        return f"<Kernel {self.name}: {self.expression}>"


@dataclass
class _Library:
    """A loaded object: its JIT library (kept alive while the functions may run) and the entry points."""

    jit: object
    functions: dict
    small: dict = dataclasses.field(default_factory=dict)  # the entries as _SMALL_KERNEL_FN


@functools.cache
def codegen_fingerprint() -> str:
    """A hash of the code generator's sources, so an edited lowering never loads stale cached objects."""
    from sympile.compiler import kernelspec  # noqa: PLC0415
    from sympile.compiler import llvm as llvm_pkg  # noqa: PLC0415
    from sympile.compiler.ops import elementwise  # noqa: PLC0415

    h = hashlib.blake2b(CODEGEN_VERSION.encode(), digest_size=8)
    folder = os.path.dirname(llvm_pkg.__file__)
    for path in sorted(os.listdir(folder)) + [elementwise.__file__, kernelspec.__file__]:
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
    """The target part of the cache keys: the host CPU as the OS reports it (host.py; LLVM derives its triple,
    CPU name and features from the same facts, so this needs no LLVM), else LLVM's own (triple, cpu, features)."""
    fingerprint = cpu_fingerprint()
    if fingerprint is not None:
        host = {"host": fingerprint}
    else:
        from sympile.compiler.llvm import target as llvm_target  # noqa: PLC0415

        triple, cpu, features = llvm_target.target_key()
        host = {"triple": triple, "cpu": cpu, "features": features}
    # the array-object entries (entries.py) read numpy's data pointer at this offset: it is part of the code
    return {**host, "codegen": codegen_fingerprint(), "array_data_offset": str(_DATA_OFFSET)}


def _load_object(obj: bytes, symbols: list[str]):
    """Load object code: our own ELF loader (objload.py, x86-64 Linux), which needs no LLVM, so a program whose
    code comes from the disk cache never imports llvmlite.binding; LLVM's JIT for anything it does not handle.
    ``SYMPILE_LOADER=llvm`` forces LLVM's JIT."""
    if os.environ.get("SYMPILE_LOADER", "") != "llvm" and sys.platform.startswith("linux"):
        from .objload import UnsupportedObject, load_object  # noqa: PLC0415

        try:
            return load_object(obj, symbols)
        except UnsupportedObject:
            pass
    from sympile.compiler.llvm import target as llvm_target  # noqa: PLC0415

    return llvm_target.load_object(obj, symbols)


def _compile(specs: list[KernelSpec], key_text: str) -> _Library:
    # the graph text alone does not fix the module: which node each kernel name computes follows the schedule
    key_text += "\n# kernels " + "; ".join(
        f"{s.name}={s.reduce}:{s.inner.describe()}:{s.inner.dtypes}:{s.scalar_inputs}:{s.ndim}:{s.axes}:"
        f"{s.out_dtype}:{s.ddof}"
        for s in specs
    )
    target = _target_fields()
    mkey = memory_key(key_text, target)
    lib = _LIBRARIES.get(mkey)
    if lib is not None:
        return lib

    # elementwise kernels also get an entry taking array objects (entries.py): the short per-call path
    object_entries = [f"{s.name}_a" for s in specs if not s.reduce] if _DATA_OFFSET is not None else []

    def build() -> bytes:
        # LLVM is loaded here, on a cache miss only: a program whose code is on disk never imports llvmlite.binding
        from sympile.compiler.llvm import target as llvm_target  # noqa: PLC0415
        from sympile.compiler.llvm.kernels import build_module  # noqa: PLC0415

        module = build_module(specs)
        if object_entries:
            from sympile.compiler.llvm.entries import add_object_entries  # noqa: PLC0415

            add_object_entries(module, specs, _DATA_OFFSET)
        mod = llvm_target.parse_and_verify(str(module))
        return llvm_target.emit_object(llvm_target.optimize(mod))

    obj = default_disk_cache().get_or_build(cache_key(key_text, target, _versions()), build)
    symbols = [s for spec in specs for s in spec.symbols] + object_entries
    jit = _load_object(obj, symbols)
    addresses = {s: jit.address(s) for s in symbols}
    lib = _Library(
        jit, {s: _KERNEL_FN(a) for s, a in addresses.items()}, {s: _SMALL_KERNEL_FN(a) for s, a in addresses.items()}
    )
    _LIBRARIES.put(mkey, lib)
    return lib


@functools.cache
def replay_driver():
    """The driver that replays recorded calls (compiler/llvm/driver.py) as a ctypes function: one small module
    for the process, built at the first recorded call and kept in the disk cache like the programs' code.
    Returns ``(loaded library, function)``; the library must stay referenced while the function may run."""

    def build() -> bytes:
        from sympile.compiler.llvm import target as llvm_target  # noqa: PLC0415
        from sympile.compiler.llvm.driver import build_driver_module  # noqa: PLC0415

        mod = llvm_target.parse_and_verify(str(build_driver_module(DRIVER_SYMBOL)))
        return llvm_target.emit_object(llvm_target.optimize(mod))

    key = cache_key("sympile replay driver", _target_fields(), _versions())
    jit = _load_object(default_disk_cache().get_or_build(key, build), [DRIVER_SYMBOL])
    return jit, replay.DRIVER_FN(jit.address(DRIVER_SYMBOL))


DRIVER_SYMBOL = "sympile_replay_driver"


# --- schedule -------------------------------------------------------------------------------------------------
def program_specs(inputs: list[Node], outputs: list[Node]) -> list[KernelSpec]:
    """The kernels CpuProgram compiles for a graph, named as it names them, without compiling anything.

    >>> from sympile.compiler.graph import input_node, make_node
    >>> x = input_node("float64", (None,), name="x")
    >>> [s.name[-3:] for s in program_specs([x], [make_node("exp", [x])])]
    ['_k0']
    """
    planned, _ = schedule_kernels(toposort(outputs), kernel_spec, lambda: canonical_text(list(outputs), list(inputs)))
    return [spec for _, _, spec in planned]


def kernel_spec(node: Node, name: str) -> tuple[KernelSpec, list[Node]] | None:
    """The kernel for ``node`` (elementwise, fused, or a reduction with its fused producers), or ``None``."""
    if node.op in ROW_OPS:
        return row_spec(node, name)
    return node_kernel_spec(node, name, NATIVE_REDUCTIONS)


def row_spec(node: Node, name: str) -> tuple[KernelSpec, list[Node]] | None:
    """The row kernel (compiler/llvm/rows.py) for softmax, log_softmax, logsumexp, var or std on float32/float64
    input; ``None`` (numpy runs it) for other dtypes."""
    (x,) = node.inputs
    if x.dtype not in ROW_DTYPES or node.dtype != x.dtype:
        return None
    axis = node.attrs.get("axis")
    if axis is None:
        axes = tuple(range(x.ndim))
    else:
        axes = tuple(sorted(axis)) if isinstance(axis, tuple) else (axis,)
    inner = Composite(1, (), (x.dtype,))
    spec = KernelSpec(name, inner, (False,), x.ndim, node.op, axes, node.dtype, node.attrs.get("ddof", 0))
    return spec, [x]


class _RowStep:
    """Runs one row kernel: the reduced axes moved last (a copy where they are not C-contiguous then), the rows
    split across threads."""

    def __init__(self, node: Node, inputs: list[Node], spec: KernelSpec, lib: _Library):
        self.node = node
        self.inputs = inputs
        self.spec = spec
        self.dtype = np.dtype(spec.out_dtype)
        self.fn = lib.functions[f"{spec.name}_row"]
        self.same_shape = ROW_OPS[spec.reduce]
        self.keepdims = node.attrs.get("keepdims", False)

    def run(self, env: dict):
        x = _operand(env[id(self.inputs[0])])
        if x.size == 0:
            with np.errstate(all="ignore"):  # numpy's values (nan for an empty var) or its error
                return run_node(self.node, [x])
        axes = self.spec.axes
        nd = x.ndim
        perm = [d for d in range(nd) if d not in axes] + list(axes)
        moved = x if perm == sorted(perm) else x.transpose(perm)
        if not moved.flags.c_contiguous:
            moved = np.ascontiguousarray(moved)  # (never on a 0-d array: it would come back 1-d)
        cols = 1
        for d in axes:
            cols *= x.shape[d]
        rows = x.size // cols
        if self.same_shape:
            out = np.empty(moved.shape, self.dtype)
            result = out if perm == sorted(perm) else out.transpose(np.argsort(perm))
        else:
            out = np.empty(rows, self.dtype)
            shape = [1 if d in axes else x.shape[d] for d in range(nd) if self.keepdims or d not in axes]
            result = out.reshape(shape)
        words = (ctypes.c_int64 * 3)(data_pointer(moved), data_pointer(out), cols)
        _call_kernel(self.fn, rows, words, [moved, out], self.node, x.size, 1)
        return result


#: ops whose numpy reference returns a new array (BLAS writes it): an elementwise epilogue may overwrite it
FRESH_RESULT_OPS = ("matmul", "dot", "tensordot")
#: ops that are a 2-d matrix product where both inputs are 2-d (numpy's matmul and dot agree there)
PRODUCT_OPS = ("matmul", "dot")
#: ops that may return their input itself: private only if their input is
PASS_THROUGH_OPS = ("sum_to",)
_SEEN, _NOT_REPLAYED = object(), object()
#: numpy steps a recorded call may contain: views whose layout follows from their input's (replay.py)
REPLAY_VIEW_OPS = ("dimshuffle", "sum_to", "reshape")
#: ops that read only their input's shape: they do not keep a buffer from being overwritten in place
METADATA_OPS = ("shape",)


def _reusable(a, shape: tuple, dtype: np.dtype) -> np.ndarray | None:
    """``a`` if a kernel can write its ``shape``/``dtype`` C-contiguous output over it (it owns its memory)."""
    if type(a) is not np.ndarray or a.shape != shape or a.dtype != dtype:
        return None
    flags = a.flags
    return a if flags.c_contiguous and flags.owndata and flags.writeable else None


#: ops whose inputs after the first are a shape, read as integers (the result never aliases them)
SHAPE_ARGUMENT_OPS = ("sum_to", "reshape")


class _ShapeMemoStep:
    """A node computed from shapes only, its last value kept: returned again while ``shape(x)`` sees the same
    shape, and while the other nodes see the very same input objects (which the kept ones upstream return).
    The kept pair is replaced in one assignment, so threads calling at once never mix two calls' values."""

    def __init__(self, node: Node, step=None):
        self.node = node
        self.step = step  # the node's kernel step, or None: numpy's reference
        self.ids = [id(i) for i in node.inputs]
        self.is_shape = node.op == "shape"
        self.memo: tuple = (_NOTHING, None)

    def run(self, env: dict):
        if self.is_shape:
            value = env[self.ids[0]]
            key = value.shape if type(value) is np.ndarray else np.shape(value)
            memo = self.memo
            if memo[0] == key:
                return memo[1]
        else:
            key = [env[i] for i in self.ids]
            memo = self.memo
            if memo[0] is not _NOTHING and all(a is b for a, b in zip(memo[0], key)):
                return memo[1]
        if self.step is not None:
            result = self.step.run(env)
        else:
            with np.errstate(all="ignore"):
                result = run_node(self.node, [env[i] for i in self.ids])
        if getattr(result, "nbytes", 0) <= MEMO_MAX_BYTES:
            self.memo = (key, result)
        return result


_NOTHING = object()
#: the largest value a _ShapeMemoStep keeps (a fill of a large input's shape is recomputed at each call)
MEMO_MAX_BYTES = 1 << 20


def _plain_product(a, b, dtype: np.dtype) -> bool:
    """Whether ``a @ b`` is a product of two 2-d arrays of ``dtype`` with matching inner sizes."""
    return (
        type(a) is np.ndarray
        and type(b) is np.ndarray
        and a.dtype == dtype
        and b.dtype == dtype
        and a.ndim == 2 == b.ndim
        and a.shape[1] == b.shape[0]
    )


class _NumpyStep:
    """A node without a kernel: numpy's reference (``run_node``), with short paths for the common cheap cases of
    a gradient's bookkeeping, which cost ~10-30 us each through the generic impl: a ``dimshuffle`` as a planned
    view (index, transpose, index), a ``sum_to`` whose input already has the target shape (returned as it is).
    Also 2-d ``matmul`` and ``alloc`` called directly (run_node's checks cost a few us and hold by construction).
    Anything unusual (an input that is not an array, a dropped axis that is not 1) takes the generic path, which
    gives numpy's values and the interpreter's errors."""

    def __init__(self, node: Node):
        self.node = node
        self.ids = [id(i) for i in node.inputs]
        self.run = self.generic
        if node.op == "dimshuffle":
            self._plan_dimshuffle(node.attrs["new_order"], node.inputs[0].ndim)
            self.run = self.dimshuffle
        elif node.op == "sum_to":
            self.run = self.sum_to
        elif node.op in PRODUCT_OPS and node.inputs[0].ndim == 2 == node.inputs[1].ndim:
            self.run = self.matmul
        elif node.op == "alloc":
            self.run = self.alloc
        self.dtype = np.dtype(node.dtype)

    def generic(self, env: dict):
        with np.errstate(all="ignore"):  # numpy's values (inf, nan), without warnings
            return run_node(self.node, [env[i] for i in self.ids])

    def _plan_dimshuffle(self, order: tuple, ndim: int) -> None:
        kept = [d for d in order if d != "x"]
        self.dropped = [d for d in range(ndim) if d not in kept]
        # integer 0 drops a size-1 axis; the trailing Ellipsis keeps a 0-d result an array (not a numpy scalar)
        self.drop_index = (*(0 if d in self.dropped else slice(None) for d in range(ndim)), Ellipsis)
        renumbered = [d - sum(1 for e in self.dropped if e < d) for d in kept]
        self.perm = tuple(renumbered) if renumbered != sorted(renumbered) else None
        self.insert_index = tuple(None if d == "x" else slice(None) for d in order) if "x" in order else None

    def dimshuffle(self, env: dict):
        x = env[self.ids[0]]
        if type(x) is not np.ndarray:
            return self.generic(env)
        if self.dropped:
            shape = x.shape
            for d in self.dropped:
                if shape[d] != 1:
                    return self.generic(env)  # numpy's squeeze error, in the interpreter's words
            x = x[self.drop_index]
        if self.perm is not None:
            x = x.transpose(self.perm)
        if self.insert_index is not None:
            x = x[self.insert_index]
        return x

    def matmul(self, env: dict):
        a, b = env[self.ids[0]], env[self.ids[1]]
        if _plain_product(a, b, self.dtype):
            out = np.matmul(a, b)  # the impl's call, without run_node's checks (they hold here by construction)
            rec = replay.recorder()
            if rec is not None:
                self._record_gemm(rec, a, b, out)
            return out
        return self.generic(env)

    def _record_gemm(self, rec, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        """A call being captured (replay.py) computes this product by numpy's BLAS ``gemm``, from native code."""
        address = gemm_address(self.dtype.name)
        layouts = operand_layout(a), operand_layout(b)
        if address is None or None in layouts or 0 in out.shape or a.shape[1] == 0 or not out.flags.c_contiguous:
            rec.fail("a product numpy's BLAS gemm cannot take as it is")
        else:
            rec.gemm(address, a, b, out, *layouts, self.node)

    def alloc(self, env: dict):
        value = env[self.ids[0]]
        if type(value) is np.ndarray and value.dtype == self.dtype:
            try:
                out = np.empty(tuple(int(env[i]) for i in self.ids[1:]), self.dtype)
                out[...] = value
                return out
            except (ValueError, TypeError):
                pass  # a negative dimension, a value that does not broadcast: the interpreter's error
        return self.generic(env)

    def sum_to(self, env: dict):
        x = env[self.ids[0]]
        target = env[self.ids[1]]
        if type(x) is np.ndarray and type(target) is np.ndarray and x.shape == tuple(target.tolist()):
            return x
        return self.generic(env)


class _KernelStep:
    """Runs one kernel node: allocate the output, pick the contiguous or strided entry point, launch."""

    def __init__(self, node: Node, inputs: list[Node], spec: KernelSpec, lib: _Library):
        self.node = node
        self.inputs = inputs
        self.spec = spec
        self.dtype = np.dtype(spec.inner.dtype)
        self.scalar = spec.scalar_inputs
        self.contiguous = lib.functions[f"{spec.name}_c"]
        self.small = lib.small[f"{spec.name}_c"]
        # the same kernel taking id(array) words (None if numpy's layout was not found): no pointer lookups
        self.by_object = lib.small.get(f"{spec.name}_a")
        self.strided = lib.functions.get(f"{spec.name}_s")
        self.words = ctypes.c_int64 * (len(inputs) + 1)
        self.exact: tuple = ((), 0)  # (dtypes, rank) of the arguments call_exact takes, set by CpuProgram
        #: an input whose buffer the output may take over (set by CpuProgram: a matmul result read only here)
        self.reuse: int | None = None
        self.plans: dict = {}  # (shape, strides) of each input -> compute's layout plan

    def run(self, env: dict):
        return self.call([env[id(i)] for i in self.inputs])

    def call(self, arrays: list | tuple) -> np.ndarray:
        """``compute`` for arrays the kernel reads as they are; the common small case (same shapes, all
        C-contiguous and aligned, few elements) takes a short path: one allocation and one GIL-holding call."""
        if not arrays or self.reuse is not None:  # (compute writes over a reusable input)
            return self.compute([_operand(a) for a in arrays])
        shape = getattr(arrays[0], "shape", None)
        for a in arrays:
            # carray: C-contiguous, aligned (and writeable); numpy scalars from fallback steps take the long way
            if type(a) is not np.ndarray or a.shape != shape or not a.flags.carray or not a.dtype.isnative:
                return self.compute([_operand(a) for a in arrays])
        size = arrays[0].size
        if size >= SMALL_ELEMENTS or size == 0:
            return self.compute(list(arrays))
        return self.small_call(arrays, shape, size)

    def call_exact(self, args) -> np.ndarray | None:
        """The short path of ``call`` straight from a user's arguments (one per kernel input), checking them on
        the way: ``None`` unless each is an ndarray of exactly its dtype in ``self.exact``, all of its
        rank and one shape, C-contiguous and aligned, with few elements; the caller then takes the general path.
        CpuProgram sets ``exact = (dtypes, ndim)`` where it offers this entry."""
        dtypes, ndim = self.exact
        a = args[0]
        if type(a) is not np.ndarray:
            return None
        shape = a.shape
        if len(shape) != ndim:
            return None
        for a, dtype in zip(args, dtypes):
            if type(a) is not np.ndarray or a.dtype is not dtype or a.shape != shape or not a.flags.carray:
                return None
        size = args[0].size
        if size >= SMALL_ELEMENTS or size == 0:
            return None
        return self.small_call(args, shape, size)

    def small_call(self, arrays, shape: tuple, size: int) -> np.ndarray:
        """The kernel over few elements of C-contiguous, aligned arrays of one ``shape``: one allocation (only
        here: a large output allocated twice costs page faults) and one GIL-holding call."""
        out = np.empty(shape, self.dtype)
        rec = replay.recorder()
        if self.by_object is not None and rec is None:  # arrays and out stay referenced until the call returns
            fn, words = self.by_object, self.words(*map(id, arrays), id(out))  # (the kernel reads it: a local)
        else:  # (a recorded call needs data pointers: the objects are this call's)
            fn, words = self.small, self.words(*map(data_pointer, arrays), data_pointer(out))
            if rec is not None:
                rec.kernel(fn, size, words, [*arrays, out], self.node)
        _check_status(self.node, fn(0, size, ctypes.addressof(words)))
        return out

    def compute(self, arrays: list) -> np.ndarray:
        # the layout work (broadcast shape, entry, loop order, collapsed dims and strides): once per layout
        shape, contiguous, order, alloc_shape, inverse, tail, rows = _layout_plan(self.plans, arrays, self._plan)
        out = None
        if self.reuse is not None and inverse is None and order == "C":
            out = _reusable(arrays[self.reuse], shape, self.dtype)
        if out is None:
            out = np.empty(alloc_shape, self.dtype, order=order)
        size = out.size
        if size == 0:
            return out if inverse is None else out.transpose(inverse)
        words = (ctypes.c_int64 * (len(arrays) + 1 + len(tail)))(*map(data_pointer, arrays), data_pointer(out), *tail)
        if contiguous:
            fn = self.small if size < SMALL_ELEMENTS else self.contiguous
            status = _call_kernel(fn, size, words, [*arrays, out], self.node, size, 64)
        else:
            status = _call_kernel(self.strided, rows, words, [*arrays, out], self.node, size, 1)
        _check_status(self.node, status)
        return out if inverse is None else out.transpose(inverse)

    def _plan(self, arrays: list) -> tuple:
        """``(shape, contiguous, order, alloc_shape, inverse, tail, rows)`` for inputs laid out as ``arrays``:
        the contiguous entry where the inputs are all C- or all Fortran-contiguous (the output takes their layout,
        as numpy's ufuncs do, and memory order is the loop order), else the strided one, walking memory in the
        order of the largest input (numpy's order='K': the output is allocated in that order and returned
        transposed back by ``inverse``). ``tail`` are the argument words after the pointers."""
        shapes = [a.shape for a in arrays] or [()]  # no array input: every input was an inlined scalar constant
        shape = shapes[0]
        for other in shapes:
            if other != shape:
                shape = broadcast_or_raise(self.node, shapes)
                break
        c_order = f_order = True
        for scalar, a in zip(self.scalar, arrays):
            if not scalar:
                if a.shape != shape:
                    c_order = f_order = False
                    break
                flags = a.flags
                c_order = c_order and flags.c_contiguous
                f_order = f_order and flags.f_contiguous
        if c_order or f_order:
            return shape, True, "F" if f_order and not c_order else "C", shape, None, (), 0
        nd = len(shape)
        strides = [_element_strides(a, nd) for a in arrays]
        order = _loop_order(shape, strides)
        alloc_shape, inverse = shape, None
        if order is not None:
            alloc_shape = tuple(shape[d] for d in order)
            strides = [[st[d] for d in order] for st in strides]
            inverse = tuple(np.argsort(order).tolist())
        dims, strides = collapse_dims(alloc_shape, strides)
        rows = math.prod(alloc_shape) // dims[-1] if dims[-1] else 0
        return shape, False, "C", alloc_shape, inverse, (*dims, *(s for st in strides for s in st)), rows


class _CopyStep:
    """The output of a gemm update (_GemmUpdateStep) made early: a C-contiguous copy of its ``Z`` (the ``W`` of
    ``W - lr*G``), taken right after an earlier step read ``Z``, while ``Z`` is still in the cache. ``None``
    where ``Z`` is not a C-contiguous 2-d array of the update's dtype (the update then takes its general path)."""

    def __init__(self, z: Node, dtype: np.dtype):
        self.node = z
        self.z = id(z)
        self.dtype = dtype

    def run(self, env: dict):
        z = env[self.z]
        if type(z) is not np.ndarray or z.dtype != self.dtype or z.ndim != 2 or not z.flags.c_contiguous or not z.size:
            return None
        out = np.empty(z.shape, self.dtype)
        rec = replay.recorder()
        if rec is not None:
            rec.copy(out, z, self.node)
        np.copyto(out, z)
        return out


class _GemmUpdateStep:
    """An elementwise kernel ``alpha*P + beta*Z`` over a matrix product ``P = A @ B`` that nothing else reads
    (compiler/affine.py), with constant coefficients: one BLAS ``gemm`` into the early copy of ``Z``
    (_CopyStep), ``out = alpha*A@B + beta*out``. ``P`` is never written and read back, and ``Z`` was read while
    in the cache: W4's update ``W1 - 0.1*(X.T @ dz)`` was a 100 us kernel after its product. ``P`` may reach the
    kernel through ``sum_to`` nodes whose target is its shape. Anything else at run time (no copy, other
    dtypes, ranks or shapes, strides BLAS cannot read) takes the steps it replaced."""

    def __init__(self, kernel: _KernelStep, form, product: Node, chain: list, copy_key):
        self.node = kernel.node
        self.kernel = kernel
        self.alpha, self.beta = form.alpha, form.beta
        self.dtype = kernel.dtype
        self.gemm = gemm_function(self.dtype.name)
        self.address = gemm_address(self.dtype.name)
        self.a, self.b = (id(i) for i in product.inputs)
        self.target_nodes = [n.inputs[1] for n in chain if n.op == "sum_to"]  # target shapes P passes through
        self.targets = [id(n) for n in self.target_nodes]
        self.copy_key = copy_key
        self.replaced = [(id(n), _NumpyStep(n).run) for n in reversed(chain)]  # the general path's steps

    def run(self, env: dict):
        out = env[self.copy_key]
        a, b = env[self.a], env[self.b]
        if (
            out is None
            or not _plain_product(a, b, self.dtype)
            or not a.shape[1]
            or out.shape != a.shape[:1] + b.shape[1:]
        ):
            return self.general(env)
        for key in self.targets:
            if tuple(env[key].tolist()) != out.shape:
                return self.general(env)
        layouts = operand_layout(a), operand_layout(b)
        if None in layouts:
            return self.general(env)
        (ta, lda), (tb, ldb) = layouts
        m, n = out.shape
        rec = replay.recorder()
        if rec is not None:
            rec.gemm(self.address, a, b, out, *layouts, self.node, self.alpha, self.beta)
        self.gemm(ROW_MAJOR, ta, tb, m, n, a.shape[1], self.alpha, data_pointer(a), lda, data_pointer(b), ldb,
                  self.beta, data_pointer(out), n)  # fmt: skip
        return out

    def general(self, env: dict):
        for key, run in self.replaced:
            env[key] = run(env)
        return self.kernel.run(env)


def _check_status(node: Node, status: int) -> None:
    """A kernel's return code: nonzero where numpy would raise (an integer to a negative power)."""
    if status:
        raise GraphValueError(f"{node.describe()}: Integers to negative integer powers are not allowed.")


#: layouts planned per kernel step before its plans are dropped (a function called with ever new shapes)
MAX_PLANS = 64


def _layout_plan(plans: dict, arrays: list, make) -> tuple:
    """``make(arrays)``, kept in ``plans`` by the arrays' shapes and strides: a step's layout work (broadcast
    shape, entry, loop order, collapsed dims and strides, ~10 us of Python) depends on nothing else, and the
    same layouts come back call after call."""
    key = tuple([(a.shape, a.strides) for a in arrays])
    plan = plans.get(key)
    if plan is None:
        plan = make(arrays)
        if len(plans) >= MAX_PLANS:
            plans.clear()
        plans[key] = plan
    return plan


class _ReduceStep:
    """Runs one reduction kernel: the kept axes first, the reduced ones last, one output element per range."""

    def __init__(self, node: Node, inputs: list[Node], spec: KernelSpec, lib: _Library):
        self.node = node
        self.inputs = inputs
        self.spec = spec
        self.dtype = np.dtype(spec.out_dtype)
        self.fn = lib.functions[f"{spec.name}_r"]
        self.outer = lib.functions.get(f"{spec.name}_o")
        self.leading = spec.axes == tuple(range(len(spec.axes))) and len(spec.axes) < spec.ndim
        self.keepdims = node.attrs["keepdims"]
        self.plans: dict = {}  # (shape, strides) of each input -> run's plan

    def run(self, env: dict):
        return self.call([env[id(i)] for i in self.inputs])

    def call(self, arrays: list) -> np.ndarray:
        """The reduction of ``arrays`` (one per kernel input): a new array."""
        arrays = [_operand(a) for a in arrays]
        kind, shape, out_shape, tail, total, work = _layout_plan(self.plans, arrays, self._plan)
        if kind == "numpy":
            return run_node(self.node, arrays)  # numpy's error: a zero-size array has no maximum
        if kind == "split":
            threads = num_threads()  # (an environment lookup: only where the split could pay)
            if threads > 1 and math.prod(out_shape) < threads:
                return self._split(arrays, shape, threads)
        out = np.empty(out_shape, self.dtype)
        if out.size == 0:
            return out
        words = (ctypes.c_int64 * (len(arrays) + 1 + len(tail)))(*map(data_pointer, arrays), data_pointer(out), *tail)
        if kind == "outer":
            # adding a row is about a quarter of the work of a typical elementwise element: split only larger ones
            status = _call_kernel(self.outer, total, words, [*arrays, out], self.node, work, 16)
        else:
            status = _call_kernel(self.fn, total, words, [*arrays, out], self.node, work, 1)
        _check_status(self.node, status)
        return out

    def _plan(self, arrays: list) -> tuple:
        """``(kind, shape, out_shape, tail, total, work)`` for inputs laid out as ``arrays`` (their shapes and
        strides): kind ``outer`` (reduced axes leading, every full input C-contiguous: rows combined into the
        output by the ``_o`` entry, columns split across threads), ``reduce`` (the ``_r`` entry over any strides,
        one output element per index), ``split`` (few outputs over many elements: see _split; else ``reduce``)
        or ``numpy`` (numpy's own error); ``tail`` are the argument words after the pointers, ``total`` the range
        the entry is launched over and ``work`` the elements read."""
        shapes = [a.shape for a in arrays]
        shape = shapes[0] if all(s == shapes[0] for s in shapes) else broadcast_or_raise(self.node, shapes)
        axes = self.spec.axes
        nd = len(shape)
        reduced = 1
        for a in axes:
            reduced *= shape[a]
        out_shape = tuple(1 if d in axes else shape[d] for d in range(nd) if self.keepdims or d not in axes)
        n_out = math.prod(out_shape)
        if reduced == 0 and self.spec.reduce in ("max", "min", "argmax", "argmin"):
            return "numpy", shape, out_shape, (), 0, 0
        if (
            self.outer is not None
            and self.leading
            and n_out >= OUTER_MIN_COLUMNS
            and all(
                scalar or (a.shape == shape and a.flags.c_contiguous)
                for scalar, a in zip(self.spec.scalar_inputs, arrays)
            )
        ):
            return "outer", shape, out_shape, (reduced, n_out), n_out, reduced * n_out // 4
        kept = [d for d in range(nd) if d not in axes]
        perm = kept + list(axes)
        strides = []
        for a in arrays:
            st = _element_strides(a, nd)
            strides += [st[d] for d in perm]
        # the work is the elements read (it was out.size times that: every small reduction went to threads)
        total = n_out * reduced
        kind = "reduce"
        if total >= PARALLEL_MIN_ELEMENTS and self.spec.reduce not in ("argmax", "argmin"):
            kind = "split"
        return kind, shape, out_shape, (*(shape[d] for d in perm), *strides), n_out, total

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
            # the work is the elements read (it was out.size times that: every small reduction went to threads)
            status = _launch(self.fn, out.size, ctypes.addressof(words), math.prod(shape), 1)
        else:
            status = self.fn(0, out.size, ctypes.addressof(words))
        _check_status(self.node, status)
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
        try:
            first = self._reduce(parts[0][0], parts[0][1], False)
        finally:
            _wait(futures)  # workers must finish before their arrays can be freed
        results = [first] + [f.result() for f in futures]
        stacked = np.stack(results)
        reduce = self.spec.reduce
        with np.errstate(all="ignore"):
            if reduce == "mean":
                # combined in float64: float16 element counts would overflow to inf
                weights = np.array([n for _, _, n in parts], dtype=np.float64).reshape(
                    (-1,) + (1,) * (stacked.ndim - 1)
                )
                return (np.sum(stacked.astype(np.float64) * weights, axis=0) / length).astype(self.dtype)
            combine = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "all": np.all, "any": np.any}
            return np.asarray(combine[reduce](stacked, axis=0), dtype=self.dtype)


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
        self.order = locality_order(toposort(outputs))  # cheap readers of a value run before a matmul evicts it
        self.shared_nodes = [n for n in self.order if n.op == "shared"]
        self.fallback_nodes: list[Node] = []
        self._library: _Library | None = None
        key_text = functools.cache(lambda: canonical_text(self.outputs, self.inputs))
        planned, self.fallback_nodes = schedule_kernels(self.order, kernel_spec, key_text)
        self.kernels: list[Kernel] = []
        self._steps: dict[int, _KernelStep] = {}
        if planned:
            lib = _compile([spec for _, _, spec in planned], key_text())
            self._library = lib  # the JIT code lives as long as this reference (the memory cache may drop it)
            for node, reads, spec in planned:
                step = _RowStep if spec.reduce in ROW_OPS else _ReduceStep if spec.reduce else _KernelStep
                self._steps[id(node)] = step(node, reads, spec, lib)
                self.kernels.append(Kernel(spec, node))
        self._copies: dict[int, tuple] = {}  # id(node) -> (key, _CopyStep) to run right after it
        self.notes: dict[int, str] = {}  # how some nodes run, for debugprint
        self._absorbed = self._plan_gemm_updates()
        self._plan_reuse()
        self._plan_shape_memo()
        self.fallback = {id(n) for n in self.fallback_nodes}
        # the per-call plan, prepared once: what to compute, in order, and the values known in advance
        self._input_ids = [id(n) for n in self.inputs]
        self._shared_ids = [id(n) for n in self.shared_nodes]
        self._constants = {id(n): leaf_value(n) for n in self.order if n.op == "constant"}
        bound = set(self._input_ids)
        self._unbound = [n for n in self.order if n.op == "input" and id(n) not in bound]
        self._plan = []
        for n in self.order:
            if not n.is_leaf and id(n) not in self._absorbed:
                self._plan.append((id(n), self._steps.get(id(n)), n))
            if id(n) in self._copies:
                key, copy = self._copies[id(n)]
                self._plan.append((key, copy, copy.node))
        # what run() calls, in order: (result key, step.run) with the numpy steps' short paths planned too
        self._calls = [(key, (step or _NumpyStep(node)).run) for key, step, node in self._plan]
        self._output_ids = [id(o) for o in self.outputs]
        self.fast = self._fast_entry()
        self.fast_exact = self._fast_exact_entry()
        # recorded calls, by argument layout (replay.py): _SEEN once seen, then a Plan or _NOT_REPLAYED
        self._replays: dict = {}
        # SYMPILE_REPLAY=0 turns replay off (to compare, or to rule it out when debugging)
        self._replay = self._library is not None and os.environ.get("SYMPILE_REPLAY", "1") != "0"
        self.capture_failure: str | None = None

    def _fast_entry(self):
        """``fast(values) -> array`` where the program is one elementwise or reduction kernel reading only inputs,
        else None.

        ``values`` must be ndarrays of exactly the inputs' types (dtype, rank, static shape), in input order;
        the result is a new writable array sharing memory with nothing, so callers need no aliasing checks.
        """
        if len(self._plan) != 1 or len(self.outputs) != 1 or self.shared_nodes or self._unbound:
            return None
        _, step, node = self._plan[0]
        if type(step) not in (_KernelStep, _ReduceStep) or node is not self.outputs[0]:
            return None
        position = {id(n): k for k, n in enumerate(self.inputs)}
        if not all(id(r) in position for r in step.inputs):
            return None
        index = [position[id(r)] for r in step.inputs]
        if index == list(range(len(self.inputs))):
            return step.call
        call = step.call
        return lambda values: call([values[k] for k in index])

    def _fast_exact_entry(self):
        """``fast_exact(args) -> array | None``: ``fast`` for raw arguments, checking their types itself (None
        where they need the general path; see _KernelStep.call_exact). Where the kernel reads every input once,
        in order, and all inputs have one rank without static dimensions; else None."""
        if self.fast is None:
            return None
        _, step, _ = self._plan[0]
        if type(step) is not _KernelStep:
            return None
        types = [n.type for n in self.inputs]
        if [id(r) for r in step.inputs] != [id(n) for n in self.inputs] or not types:
            return None
        if len({t.ndim for t in types}) != 1 or any(d is not None for t in types for d in t.shape):
            return None
        step.exact = ([t.np_dtype for t in types], types[0].ndim)
        return step.call_exact

    def _plan_shape_memo(self) -> None:
        """Values computed from shapes only (a gradient's ``shape(x)[0]``, stacked into a target shape, scalar
        arithmetic on them) are kept between calls while the shapes stay the same: W4's step has ~25 such
        nodes, ~10 us of numpy dispatch each. A kept value is never returned, nor read by anything that could
        hand it out or write it: only other kept nodes, kernels (which write a new array), or ops taking it as
        a shape argument. Fills (``alloc`` of such values: a gradient's ``ones_like``) and views of them are kept
        at any rank, up to MEMO_MAX_BYTES (recomputed beyond)."""
        deterministic = ("getitem", "stack", "fused", "dimshuffle", "reshape", "alloc")
        any_rank = ("alloc", "dimshuffle", "reshape")
        shape_only: set[int] = set()
        for node in self.order:
            if node.is_leaf or id(node) in {id(o) for o in self.outputs}:
                continue
            if node.op == "shape" or (
                (node.op in deterministic or OPS[node.op].kind == "elemwise")
                and (node.ndim <= 1 or node.op in any_rank)
                and any(id(i) in shape_only for i in node.inputs)
                and all(id(i) in shape_only or i.op == "constant" for i in node.inputs)
            ):
                shape_only.add(id(node))
        readers: dict[int, list[tuple[Node, int]]] = {}
        for node in self.order:
            for k, i in enumerate(node.inputs):
                readers.setdefault(id(i), []).append((node, k))

        def safe_reader(node: Node, k: int) -> bool:
            if id(node) in shape_only or isinstance(self._steps.get(id(node)), _KernelStep):
                return True
            return node.op == "alloc" or (node.op in SHAPE_ARGUMENT_OPS and k >= 1)

        changed = True
        while changed:  # dropping a node can make its producers unsafe in turn
            changed = False
            for key in list(shape_only):
                if not all(safe_reader(n, k) for n, k in readers.get(key, [])):
                    shape_only.discard(key)
                    changed = True
        for node in self.order:
            if id(node) in shape_only:
                self._steps[id(node)] = _ShapeMemoStep(node, self._steps.get(id(node)))

    def _plan_gemm_updates(self) -> set[int]:
        """Kernels ``alpha*P + beta*Z`` (constant coefficients) over a 2-d matrix product ``P`` only they read
        become one gemm into a copy of ``Z`` (_GemmUpdateStep), the copy taken right after the first other step
        that reads ``Z`` (_CopyStep; no fusion where there is none: the copy would read ``Z`` from memory as the
        kernel does). Returns the ids of the nodes the gemm computes itself (the product and the ``sum_to``
        nodes between it and the kernel), which run() skips."""
        # (numpy's BLAS is looked up only for a graph with a product: ~1 ms, which a warm start would feel)
        if not any(n.op in PRODUCT_OPS for n in self.order) or gemm_function("float32") is None:
            return set()
        readers: dict[int, list[Node]] = {}
        for node in self.order:
            for i in dict.fromkeys(node.inputs):
                readers.setdefault(id(i), []).append(node)
        returned = {id(o) for o in self.outputs}
        position = {id(n): k for k, n in enumerate(self.order)}

        def private(node: Node) -> bool:
            return not node.is_leaf and id(node) not in returned and len(readers.get(id(node), ())) == 1

        absorbed: set[int] = set()
        for node in self.order:
            step = self._steps.get(id(node))
            if type(step) is not _KernelStep or step.spec.reduce or node.ndim != 2:
                continue
            for k, read in enumerate(step.inputs):
                chain = [read]
                while chain[-1].op in PASS_THROUGH_OPS and private(chain[-1]):
                    chain.append(chain[-1].inputs[0])
                product = chain[-1]
                if not (product.op in PRODUCT_OPS and product.ndim == 2 and all(i.ndim == 2 for i in product.inputs)):
                    continue
                if not all(private(n) for n in chain) or any(id(n) in absorbed for n in chain):
                    continue
                form = affine_form(step.spec.inner, k, step.spec.scalar_inputs)
                if form is None or form.z is None or form.alpha_inputs or form.beta_inputs or not form.alpha:
                    continue
                if not form.beta or product.dtype != node.dtype:
                    continue
                z = step.inputs[form.z]
                if z.ndim != 2 or z.dtype != node.dtype:
                    continue
                before = position[id(node)]
                early = [
                    r for r in readers.get(id(z), ())
                    if r is not node and id(r) not in absorbed and r not in chain and position[id(r)] < before
                    and r.op not in METADATA_OPS and r.op not in ("dimshuffle", "reshape")  # (these read no data)
                ]  # fmt: skip
                if not early:
                    continue
                first = min(early, key=lambda r: position[id(r)])
                if id(first) in self._copies:
                    continue  # (one copy after a node: a second update reading the same Z keeps its kernel)
                key = ("copy", id(node))
                self._copies[id(first)] = (key, _CopyStep(z, step.dtype))
                self._steps[id(node)] = _GemmUpdateStep(step, form, product, chain, key)
                absorbed.update(id(n) for n in chain)
                self.notes[id(node)] = f"BLAS gemm into a copy of {z.name or z.op} made after {first.op}"
                self.notes.update((id(n), "in its reader's gemm") for n in chain)
                break
        return absorbed

    def _plan_reuse(self) -> None:
        """Matmul epilogues in place: an elementwise kernel whose input is a matmul result that nothing else reads
        (nor returns) writes its output over that buffer, so bias + activation read the product once and
        allocate nothing."""
        consumers: dict[int, int] = {}
        for node in self.order:
            if node.op in METADATA_OPS:
                continue  # reads the shape only, which the epilogue keeps
            for i in dict.fromkeys(node.inputs):
                consumers[id(i)] = consumers.get(id(i), 0) + 1
        returned = {id(o) for o in self.outputs}

        def private(node: Node) -> bool:
            if node.is_leaf or id(node) in returned or consumers.get(id(node), 0) != 1:
                return False
            return node.op in FRESH_RESULT_OPS or (node.op in PASS_THROUGH_OPS and private(node.inputs[0]))

        for step in self._steps.values():
            if type(step) is _KernelStep:
                for k, node in enumerate(step.inputs):
                    if node.dtype == step.node.dtype and private(node):
                        step.reuse = k
                        break

    def run(self, inputs: list, shared: list) -> list:
        if self._replay and not self._unbound:
            # a layout seen before: its call replayed by one native call (replay.py), else recorded for that
            values = [*inputs, *shared]
            key = replay.signature(values)
            if key is not None:
                plan = self._replays.get(key)
                if type(plan) is replay.Plan:
                    out = plan.run(values, _check_status)
                    if out is not None:
                        return out
                elif plan is None:
                    if len(self._replays) >= replay.MAX_REPLAYS:
                        self._replays.clear()
                    self._replays[key] = _SEEN  # the next call with this layout is recorded
                elif plan is _SEEN:
                    return self._capture(key, values, inputs, shared)
        return self._run(inputs, shared)

    def _run(self, inputs: list, shared: list, rec=None) -> list:
        """The call step by step, from Python; with ``rec`` (a replay.Recorder), classifying each value."""
        env = dict(self._constants)
        env.update(zip(self._input_ids, inputs))
        env.update(zip(self._shared_ids, shared))
        if self._unbound:
            raise GraphValueError(f"no value for input {self._unbound[0].describe()}")
        if rec is None:
            for key, run in self._calls:
                env[key] = run(env)
        else:
            for (key, run), (_, step, node) in zip(self._calls, self._plan):
                before = len(rec.ops)
                env[key] = value = run(env)
                if rec.failed is None:
                    self._classify(rec, step, node, value, len(rec.ops) - before)
        return [np.asarray(env[key]) for key in self._output_ids]

    def _capture(self, key, values: list, inputs: list, shared: list) -> list:
        """Run the call with a Recorder attached; keep the plan that replays it, or mark the layout as one that
        runs step by step."""
        rec = replay.Recorder(values, [v for v in self._constants.values() if type(v) is np.ndarray])
        with replay.attached(rec):
            out = self._run(inputs, shared, rec)
        plan = _NOT_REPLAYED
        if rec.failed is None:
            try:
                plan = replay.Plan(rec, out, replay_driver()[1], len(values))
            except replay.CaptureFailed as e:
                rec.fail(str(e))
        self._replays[key] = plan
        self.capture_failure = rec.failed  # (for tests and debugging: why the last recorded layout is not replayed)
        return out

    def _classify(self, rec, step, node: Node, value, new_ops: int) -> None:
        """Check that a recorded step's value is one a replay reproduces: a constant, the buffer of the one
        native call the step made, or a view of an earlier value laid out by the layouts alone."""
        if isinstance(step, _ShapeMemoStep):
            rec.add_constant(value)  # computed from shapes only: the same at every call with this layout
            return
        if type(value) is not np.ndarray:
            rec.fail(f"{node.describe()} gives a {type(value).__name__}")
            return

        def fixed(nodes) -> bool:  # a shape argument must not come from data (a reshape to a computed shape)
            return all(i.op == "constant" or isinstance(self._steps.get(id(i)), _ShapeMemoStep) for i in nodes)

        native = step is not None or node.op in PRODUCT_OPS
        if native:
            # (a gemm update checks its sum_to targets against the product at run time: a replay would not)
            ok = new_ops == 1 and (type(step) is not _GemmUpdateStep or fixed(step.target_nodes))
        else:
            ok = new_ops == 0 and node.op in REPLAY_VIEW_OPS and fixed(node.inputs[1:])
        if not ok:
            rec.fail(f"{node.describe()} is computed by numpy")
            return
        try:
            rec.resolve(value)
        except replay.CaptureFailed as e:
            rec.fail(f"{node.describe()}: {e}")
