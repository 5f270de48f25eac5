"""The CUDA backend: fused elementwise nodes and reductions run as PTX kernels through pycuda; other ops run
through numpy on the host.

``CudaProgram(inputs, outputs)`` has the interface of :class:`~sympile.runtime.cpu_backend.CpuProgram`:
``run(inputs, shared) -> outputs``, ``shared_nodes``, ``kernels`` (each with ``.name``, ``.llvm_ir``, ``.asm``
= PTX) and ``fallback_nodes`` (the nodes computed by numpy on the host; ``debugprint`` marks them).

Values stay on the device between kernels; a host node's inputs are copied back (and its result copied up when
a kernel reads it). Only the function's inputs, shared values and outputs cross the bus otherwise. pycuda is
imported when the first CUDA program is built; without pycuda or a GPU, building one raises
:class:`CudaUnavailable` saying what is missing. :func:`use_driver` swaps in another driver module with
pycuda.driver's interface (the tests use a fake one that runs the kernels' host simulation).
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from sympile.compiler.cuda.emit import module_ir, schedule
from sympile.compiler.cuda.kernels import kernel_symbols
from sympile.compiler.cuda.launch import elementwise_launch, final_launch, reduction_launch
from sympile.compiler.cuda.ptx import to_ptx
from sympile.compiler.errors import GraphValueError
from sympile.compiler.graph import Node
from sympile.compiler.layout import collapse_dims
from sympile.compiler.llvm.kernels import accumulator_dtype

from .cache import MemoryCache
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


def _device() -> Device:
    drv = _driver_override[-1] if _driver_override and _driver_override[-1] is not None else _pycuda_driver()
    dev = _devices.get(id(drv))
    if dev is None or dev.drv is not drv:
        dev = _devices[id(drv)] = Device(drv)
    return dev


class DeviceArray:
    """A C-contiguous array in GPU memory: ``shape``, ``dtype`` and the allocation (freed with this object)."""

    def __init__(self, device: Device, shape: tuple, dtype):
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.nbytes = self.size * self.dtype.itemsize
        self.device = device
        self.allocation = device.alloc(self.nbytes)
        self.ptr = int(self.allocation)

    @classmethod
    def from_host(cls, device: Device, array) -> DeviceArray:
        a = np.asarray(array, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        out = cls(device, a.shape, a.dtype)
        if a.nbytes:
            device.drv.memcpy_htod(out.allocation, a)
        return out

    def get(self) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        if self.nbytes:
            self.device.drv.memcpy_dtoh(out, self.allocation)
        return out

    def strides(self, nd: int) -> list[int]:
        """Element strides left-padded to rank ``nd``; 0 along size-1 (broadcast) dimensions."""
        st, step = [], 1
        for d in reversed(self.shape):
            st.append(0 if d == 1 else step)
            step *= d
        return [0] * (nd - len(self.shape)) + st[::-1]


def _has_pow(spec) -> bool:
    """Whether a kernel may flag numpy's error (an integer to a negative power): only ``pow`` steps can."""
    return any(op == "pow" for op, _, _ in spec.inner.steps)


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
        self._functions: dict | None = None
        self._err = None
        self.may_fail = any(_has_pow(spec) for spec in sched.specs)
        self._constants = {id(n): leaf_value(n) for n in self.order if n.op == "constant"}
        self.launches: list = []  # (symbol, grid, block) of the last run, for debugging and the tests

    @functools.cached_property
    def ptx(self) -> str:
        """The PTX of all kernels of the program, in one module (the same graph built again in this process,
        from new variables, reuses it: kernel names are derived from the graph's canonical text too)."""
        key = (self.schedule.key, self.device.arch)
        text = _PTX.get(key)
        if text is None:
            text = to_ptx(module_ir(self.schedule.specs), self.device.arch)
            _PTX.put(key, text)
        return text

    def _load(self) -> dict:
        if self._functions is None:
            functions = {}
            if self.schedule.kernels:
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
        if isinstance(value, DeviceArray):
            return value
        found = copies.get(key)
        if found is None:
            found = copies[key] = DeviceArray.from_host(self.device, np.asarray(value))
        return found

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
        contiguous = all(s or a.shape == shape for s, a in zip(spec.scalar_inputs, arrays))
        if contiguous:
            self._launch(f"{spec.name}_c", grid, block, [_i64(out.size), *ptrs])
        else:
            nd = len(shape)
            dims, strides = collapse_dims(shape, [a.strides(nd) for a in arrays])
            meta = [_i64(v) for v in [*dims, *(s for st in strides for s in st)]]
            self._launch(f"{spec.name}_s", grid, block, [_i64(out.size), *ptrs, *meta])
        return out

    def _reduce(self, node: Node, spec, arrays: list):
        shapes = [a.shape for a in arrays]
        shape = shapes[0] if all(s == shapes[0] for s in shapes) else broadcast_or_raise(node, shapes)
        axes, nd = spec.axes, len(shape)
        n_red = int(np.prod([shape[a] for a in axes], dtype=np.int64))
        if n_red == 0 and spec.reduce in ("max", "min", "argmax", "argmin"):
            return run_node(node, [a.get() for a in arrays])  # numpy's error: a zero-size array has no maximum
        keepdims = node.attrs["keepdims"]
        out_shape = tuple(1 if d in axes else shape[d] for d in range(nd) if keepdims or d not in axes)
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

    def _err_ptr(self) -> int:
        if self._err is None:
            self._err = DeviceArray(self.device, (1,), np.int32)
            self.device.drv.memset_d32(self._err.allocation, 0, 1)
        return self._err.ptr

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
            if found is None:
                with np.errstate(all="ignore"):  # numpy's values (inf, nan), without warnings
                    args = [self._on_host(host, id(i), env[id(i)]) for i in node.inputs]
                    env[id(node)] = run_node(node, args)
                continue
            reads, spec = found
            arrays = [self._on_device(device, id(i), env[id(i)]) for i in reads]
            if spec.reduce:
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
        return [np.asarray(self._on_host(host, id(o), env[id(o)])) for o in self.outputs]


__all__ = ["CudaProgram", "CudaUnavailable", "DeviceArray", "kernel_symbols", "use_driver"]
