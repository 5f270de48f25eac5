"""The CUDA backend: fused elementwise nodes, reductions and float matmuls run as PTX kernels through pycuda;
other ops run through numpy on the host.

``CudaProgram(inputs, outputs)`` has the interface of :class:`~sympile.runtime.cpu_backend.CpuProgram`:
``run(inputs, shared) -> outputs``, ``shared_nodes``, ``kernels`` (each with ``.name``, ``.llvm_ir``, ``.asm``
= PTX) and ``fallback_nodes`` (the nodes computed by numpy on the host; ``debugprint`` marks them).

Values stay on the device between kernels; a host node's inputs are copied back (and its result copied up when a
kernel reads it), except where metadata is enough (``shape``; ``sum_to`` its own shape; a ``dimshuffle``, transposes
included, is a strided view of the same memory, a ``reshape`` of a C-ordered value a view too, an ``alloc`` (fill) a
view with stride 0 along the broadcast axes; kernels read views through their strides) and for a float ``sum_to``
that sums (a GPU sum over the axes found at run time). Only the function's inputs and outputs cross the bus
otherwise: shared variables live on the device (:meth:`CudaProgram.place_shared`; the frontend stores the
:class:`DeviceArray` and ``get_value()`` copies it back), and updates are returned as device arrays. The PTX is
cached on disk (runtime/cache.py), so a new process building the same graph skips LLVM. pycuda is imported when the
first CUDA program is built; without pycuda or a GPU, building one raises :class:`CudaUnavailable` saying what is
missing. :func:`use_driver` swaps in another driver module with pycuda.driver's interface (the tests use a fake one
that runs the kernels' host simulation).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from dataclasses import replace

import numpy as np

from sympile.compiler.cuda.emit import MATMUL_OPS, module_ir, schedule
from sympile.compiler.cuda.kernels import GPU_TRIPLE, MatmulSpec, kernel_symbols
from sympile.compiler.cuda.launch import elementwise_launch, final_launch, matmul_launch, reduction_launch
from sympile.compiler.cuda.ptx import to_ptx
from sympile.compiler.errors import GraphValueError
from sympile.compiler.graph import Node
from sympile.compiler.layout import collapse_dims
from sympile.compiler.llvm.kernels import accumulator_dtype

from .cache import MemoryCache, cache_key, default_disk_cache
from .interpreter import broadcast_or_raise, leaf_value, run_node

INSTALL_HINT = "pip install sympile[cuda]  (installs pycuda; it needs an NVIDIA driver and a CUDA-capable GPU)"


class CudaUnavailable(RuntimeError):
    """backend='cuda' cannot run here: pycuda is missing, or no GPU or driver is found."""


_driver_override: list = []
_PTX = MemoryCache(max_entries=64)


@contextlib.contextmanager
def use_driver(driver):
    """Build CUDA programs with ``driver`` (a module with pycuda.driver's interface) inside the block.

    >>> with use_driver(None):
    ...     pass
    """
    _driver_override.append(driver)
    try:
        yield driver
    finally:
        _driver_override.pop()


@functools.cache
def _pycuda_driver():
    try:
        import pycuda.driver as drv  # noqa: PLC0415  (imported lazily: only CUDA users need it)
    except ImportError as exc:
        raise CudaUnavailable(
            f"backend='cuda' needs pycuda, which is not installed ({exc}). Install: {INSTALL_HINT}"
        ) from None
    return drv


class Device:
    """One GPU through a pycuda.driver-like module: its context, multiprocessor count and architecture."""

    def __init__(self, drv):
        self.drv = drv
        try:
            drv.init()
            count = drv.Device.count()
        except Exception as exc:  # noqa: BLE001  (pycuda raises its own LogicError/RuntimeError types)
            raise CudaUnavailable(
                f"backend='cuda': the CUDA driver did not initialize ({exc}); is an NVIDIA driver installed?"
            ) from None
        if count == 0:
            raise CudaUnavailable("backend='cuda': no CUDA-capable GPU found (the driver reports 0 devices)")
        self.device = drv.Device(0)
        self.context = self.device.retain_primary_context()
        self.context.push()
        self.sm_count = int(self.device.get_attribute(drv.device_attribute.MULTIPROCESSOR_COUNT))
        major, minor = self.device.compute_capability()
        self.arch = _supported_arch(major, minor)

    def alloc(self, nbytes: int):
        return self.drv.mem_alloc(max(int(nbytes), 1))  # CUDA rejects 0-byte allocations


#: the GPU architectures LLVM's NVPTX backend knows (PTX for an unknown one would not load)
KNOWN_ARCHS = (50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90, 100, 101, 120)


def _supported_arch(major: int, minor: int) -> str:
    """``sm_XY`` for the device, or the newest architecture LLVM knows below it (PTX is forward-compatible).

    >>> _supported_arch(8, 6), _supported_arch(13, 0)
    ('sm_86', 'sm_120')
    """
    cc = 10 * major + minor
    return f"sm_{max((a for a in KNOWN_ARCHS if a <= cc), default=KNOWN_ARCHS[0])}"


_devices: dict = {}


@functools.cache
def codegen_fingerprint() -> str:
    """A hash of the sources that decide the PTX (compiler/cuda, compiler/llvm, the scalar lowerings), so an
    edited code generator never loads stale PTX from the disk cache."""
    from sympile import compiler  # noqa: PLC0415

    root = os.path.dirname(compiler.__file__)
    files = [os.path.join(root, d, f) for d in ("cuda", "llvm") for f in sorted(os.listdir(os.path.join(root, d)))]
    files += [os.path.join(root, "kernelspec.py"), os.path.join(root, "ops", "elementwise.py")]
    h = hashlib.blake2b(digest_size=8)
    for path in files:
        if path.endswith(".py") and os.path.exists(path):
            h.update(path[len(root) :].encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def ptx_target(arch: str) -> dict:
    """The target part of a PTX disk-cache key.

    >>> ptx_target("sm_90")["cpu"]
    'sm_90'
    """
    return {"triple": GPU_TRIPLE, "cpu": arch, "features": "", "codegen": codegen_fingerprint()}


@functools.cache
def _versions() -> dict:
    import llvmlite  # noqa: PLC0415  (its __init__ loads no LLVM)

    import sympile  # noqa: PLC0415

    return {"sympile": getattr(sympile, "__version__", "unknown"), "llvmlite": llvmlite.__version__}


def _device() -> Device:
    drv = _driver_override[-1] if _driver_override and _driver_override[-1] is not None else _pycuda_driver()
    dev = _devices.get(id(drv))
    if dev is None or dev.drv is not drv:
        dev = _devices[id(drv)] = Device(drv)
    return dev


class DeviceArray:
    """An array in GPU memory: ``shape``, ``dtype`` and the allocation (freed with the last array using it).

    A new array is C-contiguous; :meth:`view` gives another array over the same memory with other element
    strides (a transpose, an added axis), which every kernel reads through its strides: no copy."""

    def __init__(self, device: Device, shape: tuple, dtype):
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.nbytes = self.size * self.dtype.itemsize
        self.device = device
        self.allocation = device.alloc(self.nbytes)
        self.ptr = int(self.allocation)
        self.alloc_size = self.size  # elements in the allocation (a view may see them in another order)
        self.elem_strides: tuple | None = None  # None: C-contiguous

    @classmethod
    def from_host(cls, device: Device, array) -> DeviceArray:
        a = np.asarray(array, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        out = cls(device, a.shape, a.dtype)
        if a.nbytes:
            device.drv.memcpy_htod(out.allocation, a)
        return out

    def view(self, shape: tuple, strides: tuple | None = None) -> DeviceArray:
        """The same memory seen with another shape and element strides (``None``: C-contiguous, which needs a
        contiguous array of the same size)."""
        out = object.__new__(DeviceArray)
        out.__dict__.update(self.__dict__)
        out.shape = tuple(int(d) for d in shape)
        out.size = int(np.prod(out.shape, dtype=np.int64))
        out.nbytes = out.size * self.dtype.itemsize
        out.elem_strides = None if strides is None else tuple(int(v) for v in strides)
        return out

    @property
    def contiguous(self) -> bool:
        """Whether the elements are in C order (strides along size-1 axes do not matter)."""
        if self.elem_strides is None:
            return True
        step = 1
        for d, st in zip(reversed(self.shape), reversed(self.elem_strides)):
            if d != 1 and st != step:
                return False
            step *= d
        return True

    def get(self) -> np.ndarray:
        """A host copy (a new C-contiguous numpy array)."""
        if not self.size:
            return np.empty(self.shape, self.dtype)
        if self.contiguous:
            out = np.empty(self.shape, self.dtype)
            self.device.drv.memcpy_dtoh(out, self.allocation)
            return out
        base = np.empty(self.alloc_size, self.dtype)  # the whole allocation, then numpy's strided copy
        self.device.drv.memcpy_dtoh(base, self.allocation)
        strides = [st * self.dtype.itemsize for st in self.elem_strides]
        return np.ascontiguousarray(np.lib.stride_tricks.as_strided(base, self.shape, strides))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def strides(self, nd: int) -> list[int]:
        """Element strides left-padded to rank ``nd``; 0 along size-1 (broadcast) dimensions."""
        if self.elem_strides is not None:
            st = [0 if d == 1 else v for d, v in zip(self.shape, self.elem_strides)]
            return [0] * (nd - len(self.shape)) + st
        st, step = [], 1
        for d in reversed(self.shape):
            st.append(0 if d == 1 else step)
            step *= d
        return [0] * (nd - len(self.shape)) + st[::-1]


def _broadcast_view(x: DeviceArray, shape: list) -> DeviceArray | None:
    """``alloc(x, *shape)`` as a view of ``x``'s memory: stride 0 along the axes it is broadcast along (device values
    are never written in place: every kernel writes a new array). ``None`` where numpy's broadcast would fail.

    >>> class Dev:
    ...     alloc = staticmethod(lambda nbytes: 0)
    >>> _broadcast_view(DeviceArray(Dev(), (1, 3), "float32"), [4, 2, 3]).strides(3)
    [0, 0, 1]
    """
    if len(shape) < x.ndim or any(d < 0 for d in shape):
        return None
    lead = len(shape) - x.ndim
    src = x.strides(x.ndim)
    strides = [0] * lead
    for d, xd, st in zip(shape[lead:], x.shape, src):
        if xd != d and xd != 1:
            return None  # numpy's error, from numpy
        strides.append(st if xd == d else 0)
    return x.view(tuple(shape), tuple(strides))


def _has_pow(spec) -> bool:
    """Whether a kernel may flag numpy's error (an integer to a negative power): only ``pow`` steps can."""
    return not isinstance(spec, MatmulSpec) and any(op == "pow" for op, _, _ in spec.inner.steps)


def _ptr(x) -> np.uintp:
    return np.uintp(x.ptr)


def _i64(v: int) -> np.int64:
    return np.int64(v)


class CudaKernel:
    """A GPU kernel: ``name``, ``expression``, ``llvm_ir`` (its driver IR) and ``asm`` (its PTX)."""

    def __init__(self, spec, node: Node, arch: str):
        self.spec = spec
        self.name = spec.name
        self.arch = arch
        self.expression = node.attrs["inner"].describe() if node.op.startswith("fused") else node.op

    @functools.cached_property
    def llvm_ir(self) -> str:
        return module_ir([self.spec])

    @functools.cached_property
    def asm(self) -> str:
        return to_ptx(self.llvm_ir, self.arch)

    def __repr__(self):
        return f"<CudaKernel {self.name}: {self.expression}>"


class CudaProgram:
    """Compiled form of a graph for the CUDA backend (see the module docstring)."""

    def __init__(self, inputs: list[Node], outputs: list[Node]):
        self.device = _device()  # fails here, at function() time, when CUDA is unavailable
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        sched = schedule(self.inputs, self.outputs)
        self.schedule = sched
        self.order = sched.order
        self.shared_nodes = [n for n in self.order if n.op == "shared"]
        self.fallback_nodes = list(sched.fallback)
        self.fallback = {id(n) for n in self.fallback_nodes}
        self.kernels = [CudaKernel(spec, node, self.device.arch) for node, _, spec in sched.kernels]
        self._kernel_of = {id(node): (reads, spec) for node, reads, spec in sched.kernels}
        # the nodes whose values kernels read, directly or through views (a fill goes up small, then is a view)
        self._kernel_reads = {id(r) for _, reads, _ in sched.kernels for r in reads}
        for node in reversed(sched.order):
            if id(node) in self._kernel_reads and node.op in ("dimshuffle", "reshape") and id(node) in self.fallback:
                self._kernel_reads.add(id(node.inputs[0]))
        self._functions: dict | None = None
        self._err = None
        self.may_fail = any(_has_pow(spec) for spec in sched.specs)
        self._constants = {id(n): leaf_value(n) for n in self.order if n.op == "constant"}
        self.launches: list = []  # (symbol, grid, block) of the last run, for debugging and the tests
        #: the last this many outputs (a Function's updates of shared variables) are returned as DeviceArrays,
        #: which the frontend stores: shared values stay on the device between calls (set by the Function)
        self.device_outputs = 0

    @functools.cached_property
    def ptx(self) -> str:
        """The PTX of all kernels of the program, in one module: from memory when this process built the same
        graph (kernel names are derived from the graph's canonical text too), else from the disk cache (key:
        the canonical graph text, the architecture, the versions and a hash of the code generator's sources),
        else generated by LLVM and stored there."""
        key = (self.schedule.key, self.device.arch)
        text = _PTX.get(key)
        if text is None:
            arch = self.device.arch
            dkey = cache_key(self.schedule.key, ptx_target(arch), _versions())
            text = default_disk_cache().get_or_build(
                dkey, lambda: to_ptx(module_ir(self.schedule.specs), arch).encode()
            )
            text = text.decode()
            _PTX.put(key, text)
        return text

    def _load(self) -> dict:
        if self._functions is None:
            functions = {}
            if self.schedule.specs:  # (a sum_to's kernels may be the only ones: a shared value summed)
                # the driver reads PTX as a C string: NUL-terminated
                module = self.device.drv.module_from_buffer(self.ptx.encode() + b"\0")
                self._module = module  # functions are valid while their module lives
                for sym in self.schedule.symbols:
                    functions[sym] = module.get_function(sym)
            self._functions = functions
        return self._functions

    # --- values -------------------------------------------------------------------------------------------
    def _on_device(self, copies: dict, key: int, value) -> DeviceArray:
        """``value`` on the device, copied up once per call however many kernels read it."""
        if isinstance(value, DeviceArray) and value.device is self.device:
            return value
        found = copies.get(key)
        if found is None:
            host = value.get() if isinstance(value, DeviceArray) else np.asarray(value)  # (another device's)
            found = copies[key] = DeviceArray.from_host(self.device, host)
        return found

    def place_shared(self, value) -> DeviceArray:
        """A shared variable's value in this device's memory, where it stays between calls (the frontend
        stores what this returns; ``get_value()`` copies it back). Host values are copied up once."""
        if isinstance(value, DeviceArray) and value.device is self.device:
            return value
        host = value.get() if hasattr(value, "get") else np.asarray(value)
        return DeviceArray.from_host(self.device, host)

    @staticmethod
    def _on_host(copies: dict, key: int, value):
        """``value`` on the host, copied back once per call however many host nodes read it."""
        if not isinstance(value, DeviceArray):
            return value
        found = copies.get(key)
        if found is None:
            found = copies[key] = value.get()
        return found

    def _launch(self, symbol: str, grid: tuple, block: tuple, args: list) -> None:
        self.launches.append((symbol, grid, block))
        self._load()[symbol](*args, block=block, grid=grid)

    # --- kernels --------------------------------------------------------------------------------------------
    def _elementwise(self, node: Node, spec, arrays: list) -> DeviceArray:
        shapes = [a.shape for a in arrays] or [()]
        shape = shapes[0] if all(s == shapes[0] for s in shapes) else broadcast_or_raise(node, shapes)
        out = DeviceArray(self.device, shape, spec.inner.dtype)
        if out.size == 0:
            return out
        grid, block = elementwise_launch(out.size, self.device.sm_count)
        ptrs = [_ptr(a) for a in arrays] + [_ptr(out), np.uintp(self._err_ptr())]
        contiguous = all(s or (a.shape == shape and a.contiguous) for s, a in zip(spec.scalar_inputs, arrays))
        if contiguous:
            self._launch(f"{spec.name}_c", grid, block, [_i64(out.size), *ptrs])
        else:
            nd = len(shape)
            dims, strides = collapse_dims(shape, [a.strides(nd) for a in arrays])
            meta = [_i64(v) for v in [*dims, *(s for st in strides for s in st)]]
            self._launch(f"{spec.name}_s", grid, block, [_i64(out.size), *ptrs, *meta])
        return out

    def _reduce(self, node: Node, spec, arrays: list, keepdims: bool | None = None):
        shapes = [a.shape for a in arrays]
        shape = shapes[0] if all(s == shapes[0] for s in shapes) else broadcast_or_raise(node, shapes)
        axes, nd = spec.axes, len(shape)
        n_red = int(np.prod([shape[a] for a in axes], dtype=np.int64))
        if keepdims is None:
            keepdims = node.attrs.get("keepdims", False)  # (a matrix-vector product has none)
        out_shape = tuple(1 if d in axes else shape[d] for d in range(nd) if keepdims or d not in axes)
        if n_red == 0 and spec.reduce in ("max", "min", "argmax", "argmin"):
            if id(node) in self.schedule.empty_max_is_neg_inf:  # an expanded logsumexp's shift: numpy gives -inf
                return np.full(out_shape, -np.inf, spec.out_dtype)
            host = [a.get() for a in arrays]
            origin = self.schedule.expanded_from.get(id(node))
            if origin is not None:  # an expanded softmax's max: numpy's error, in the softmax's name
                run_node(origin, host)
            return run_node(node, host)  # numpy's error: a zero-size array has no maximum
        out = DeviceArray(self.device, out_shape, spec.out_dtype)
        if out.size == 0:
            return out
        kept = [d for d in range(nd) if d not in axes]
        perm = kept + list(axes)
        strides = []
        for a in arrays:
            st = a.strides(nd)
            strides += [st[d] for d in perm]
        (gx, gy), block = reduction_launch(out.size, n_red, self.device.sm_count)
        acc = np.dtype(accumulator_dtype(spec.reduce, spec.out_dtype, spec.inner.dtype))
        partials = [DeviceArray(self.device, (out.size, gx), acc)]
        if spec.reduce in ("argmax", "argmin"):
            partials.append(DeviceArray(self.device, (out.size, gx), np.int64))  # the best values' indices
        meta = [_i64(shape[d]) for d in perm] + [_i64(s) for s in strides]
        ptrs = [_ptr(a) for a in arrays] + [_ptr(p) for p in partials] + [np.uintp(self._err_ptr())]
        self._launch(f"{spec.name}_rp", (gx, gy), block, [*ptrs, *meta])
        grid, fblock = final_launch(out.size, self.device.sm_count)
        args = [_i64(out.size), _i64(gx), _i64(n_red), *(_ptr(p) for p in partials), _ptr(out)]
        self._launch(f"{spec.name}_rf", grid, fblock, args)
        return out

    def _sum_to(self, node: Node, args: list) -> DeviceArray | None:
        """``sum_to(x, shape)`` of a device value as a GPU sum over the axes numpy's ``sum_to`` would sum, known
        only now (the kernel of the schedule for that many axes); ``None``: run it on the host (numpy's error
        for shapes that do not match, or no kernel)."""
        x, target = args
        specs = self.schedule.sum_to.get(id(node))
        if specs is None or not isinstance(x, DeviceArray) or isinstance(target, DeviceArray):
            return None
        shape = tuple(int(d) for d in np.asarray(target).reshape(-1))
        lead = x.ndim - len(shape)
        if lead < 0:
            return None
        axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and x.shape[lead + i] != 1)
        if tuple(1 if d in axes else x.shape[d] for d in range(lead, x.ndim)) != shape or len(axes) not in specs:
            return None
        out = self._reduce(node, replace(specs[len(axes)], axes=axes), [x], keepdims=True)
        return out.view(shape)

    def _matmul(self, node: Node, spec: MatmulSpec, arrays: list):
        """``a @ b`` for operands of rank 1 or 2 (numpy's dot/matmul rules): as an ``m x k`` by ``k x n``
        product with element strides (0 for the missing dimension of a vector, swapped for a transpose)."""
        operands = []
        for x, t, is_b in zip(arrays, spec.transposed, (False, True)):
            if x.ndim == 2:
                (r, c), (sr, sc) = x.shape, x.strides(2)
                operands.append(((c, r), (sc, sr)) if t else ((r, c), (sr, sc)))
            else:  # a vector: a row of a (1 x k), a column of b (k x 1)
                (st,) = x.strides(1)
                operands.append(((x.shape[0], 1), (st, 0)) if is_b else ((1, x.shape[0]), (0, st)))
        ((m, ka), (sa_m, sa_k)), ((kb, n), (sb_k, sb_n)) = operands
        if ka != kb:  # numpy's error, from numpy
            return run_node(node, [x.get().T if t else x.get() for x, t in zip(arrays, spec.transposed)])
        shape = tuple(d for d, keep in ((m, arrays[0].ndim == 2), (n, arrays[1].ndim == 2)) if keep)
        out = DeviceArray(self.device, shape, spec.dtype)
        if out.size == 0:
            return out
        grid, block = matmul_launch(m, n, spec.layout)
        args = [_i64(m), _i64(n), _i64(ka), *(_ptr(x) for x in arrays), _ptr(out)]
        self._launch(f"{spec.name}_mm", grid, block, [*args, *(_i64(v) for v in (sa_m, sa_k, sb_k, sb_n))])
        return out

    def _err_ptr(self) -> int:
        if self._err is None:
            self._err = DeviceArray(self.device, (1,), np.int32)
            self.device.drv.memset_d32(self._err.allocation, 0, 1)
        return self._err.ptr

    # --- host nodes ---------------------------------------------------------------------------------------
    @staticmethod
    def _on_host_anyway(node: Node, found: tuple, env: dict) -> bool:
        """A kernel whose inputs are all 0-d host values (shapes, counts: a gradient's ``1/n``) runs in numpy:
        an upload per input and a launch would cost more, and its result is one scalar to upload."""
        reads, spec = found
        if isinstance(spec, MatmulSpec) or node.ndim or [id(i) for i in reads] != [id(i) for i in node.inputs]:
            return False  # (a kernel that reads through a node, e.g. a transpose, needs its own inputs)
        return all(not isinstance(env[id(i)], DeviceArray) and np.ndim(env[id(i)]) == 0 for i in reads)

    @staticmethod
    def _without_transfer(node: Node, args: list):
        """A host node computed from device arrays' metadata, or as a view of one, without copying it back:
        ``shape``, ``sum_to`` its own shape (a gradient's unbroadcast where nothing was broadcast), ``dimshuffle``
        (a transpose too: a strided view) and ``reshape`` of a C-ordered value. ``None``: run it on the host."""
        x = args[0] if args else None
        if not isinstance(x, DeviceArray):
            return None
        if node.op == "shape":
            return np.array(x.shape, np.int64)
        if node.op == "sum_to" and not isinstance(args[1], DeviceArray):
            return x if tuple(int(d) for d in np.asarray(args[1]).reshape(-1)) == x.shape else None
        if node.op == "dimshuffle":
            order = node.attrs["new_order"]
            if any(x.shape[d] != 1 for d in range(x.ndim) if d not in order):
                return None  # numpy's error for a dropped dimension that is not 1, from numpy
            strides = x.strides(x.ndim)
            shape = tuple(1 if d == "x" else x.shape[d] for d in order)
            return x.view(shape, tuple(0 if d == "x" else strides[d] for d in order))
        if node.op == "alloc" and not any(isinstance(d, DeviceArray) for d in args[1:]):
            return _broadcast_view(x, [int(np.asarray(d)) for d in args[1:]])
        if node.op == "reshape" and x.contiguous and not isinstance(args[1], DeviceArray):
            target = [int(d) for d in np.asarray(args[1]).reshape(-1)]
            if target.count(-1) == 1 and all(d > 0 for d in target if d != -1):
                known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
                if x.size % known == 0:
                    target[target.index(-1)] = x.size // known
            if all(d >= 0 for d in target) and int(np.prod(target, dtype=np.int64)) == x.size:
                return x.view(tuple(target))
            return None  # numpy's error, from numpy
        return None

    # --- run ------------------------------------------------------------------------------------------------
    def run(self, inputs: list, shared: list) -> list:
        self.launches = []
        env = dict(self._constants)
        env.update((id(n), v) for n, v in zip(self.inputs, inputs))
        env.update((id(n), v) for n, v in zip(self.shared_nodes, shared))
        device: dict = {}  # host values copied up in this call
        host: dict = {}  # device values copied back in this call
        for node in self.order:
            if id(node) in env:
                continue
            if node.op == "input":
                raise GraphValueError(f"no value for input {node.describe()}")
            found = self._kernel_of.get(id(node))
            if found is None or self._on_host_anyway(node, found, env):
                args = [env[id(i)] for i in node.inputs]
                value = self._without_transfer(node, args)
                if value is None and node.op == "sum_to":
                    value = self._sum_to(node, args)
                if value is None and node.op == "alloc" and id(node) in self._kernel_reads:
                    # a fill read by a kernel: its (small) value goes up, not the filled array
                    args[0] = self._on_device(device, id(node.inputs[0]), args[0])
                    value = self._without_transfer(node, args)
                if value is None:
                    with np.errstate(all="ignore"):  # numpy's values (inf, nan), without warnings
                        args = [self._on_host(host, id(i), env[id(i)]) for i in node.inputs]
                        value = run_node(node, args)
                env[id(node)] = value
                continue
            reads, spec = found
            arrays = [self._on_device(device, id(i), env[id(i)]) for i in reads]
            if isinstance(spec, MatmulSpec):
                env[id(node)] = self._matmul(node, spec, arrays)
            elif node.op in MATMUL_OPS and arrays[0].shape[-1] != arrays[1].shape[-1]:
                # a product with a vector as a reduction over the contraction axis (last in both reads): numpy's
                # error for operands that do not align, from numpy
                operands = [x.get() if r is i else x.get().T for x, r, i in zip(arrays, reads, node.inputs)]
                env[id(node)] = run_node(node, operands)
            elif spec.reduce:
                env[id(node)] = self._reduce(node, spec, arrays)
            else:
                env[id(node)] = self._elementwise(node, spec, arrays)
        if self.may_fail and self._err is not None:
            flag = np.zeros(1, np.int32)
            self.device.drv.memcpy_dtoh(flag, self._err.allocation)
            if flag[0]:
                self.device.drv.memset_d32(self._err.allocation, 0, 1)
                where = "; ".join(n.describe() for n, _, sp in self.schedule.kernels if _has_pow(sp))
                raise GraphValueError(f"{where}: Integers to negative integer powers are not allowed.")
        outputs = self.schedule.outputs  # (the scheduled graph's: row ops expanded)
        n_host = len(outputs) - self.device_outputs
        outs = [np.asarray(self._on_host(host, id(o), env[id(o)])) for o in outputs[:n_host]]
        return outs + [self.place_shared(env[id(o)]) for o in outputs[n_host:]]


__all__ = ["CudaProgram", "CudaUnavailable", "DeviceArray", "kernel_symbols", "use_driver"]
