"""pycuda.driver's interface, as far as sympile's CUDA runtime uses it, over CuPy's CUDA bindings.

For a GPU machine that has CuPy but not pycuda (pycuda is a source package: it builds against CUDA's headers, and
a lent machine has no internet to fetch its build requirements). ``bench/gpu.py --driver cupy`` runs sympile
through it with ``runtime.cuda_backend.use_driver``. The kernels are sympile's PTX, loaded by the CUDA driver as
with pycuda; what differs: allocations come from CuPy's memory pool (pycuda calls cuMemAlloc/cuMemFree each
time), so sympile's rows time slightly less allocation work than with pycuda. The examples need CuPy and a GPU.

>>> drv = CupyDriver()  # doctest: +SKIP
>>> drv.Device(0).compute_capability()  # doctest: +SKIP
(9, 0)
"""

from __future__ import annotations

from types import SimpleNamespace

# cudaMemcpyKind
HOST_TO_DEVICE, DEVICE_TO_HOST, DEVICE_TO_DEVICE = 1, 2, 3


class _Allocation:
    """A device allocation: ``int()`` is its address; CuPy's pool takes it back when this is freed."""

    __slots__ = ("memory",)

    def __init__(self, memory):
        self.memory = memory  # a cupy.cuda.MemoryPointer

    def __int__(self):
        return int(self.memory.ptr)


class _Context:
    def __init__(self, runtime):
        self.runtime = runtime

    def push(self):  # CuPy works in the device's primary context, which pycuda's retain_primary_context is too
        pass

    def synchronize(self):
        self.runtime.deviceSynchronize()


class _Device:
    def __init__(self, cp, index: int):
        self.cp, self.index = cp, index
        self.props = cp.cuda.runtime.getDeviceProperties(index)

    def retain_primary_context(self):
        self.cp.cuda.Device(self.index).use()
        return _Context(self.cp.cuda.runtime)

    def get_attribute(self, attr):
        if attr != "MULTIPROCESSOR_COUNT":
            raise NotImplementedError(f"CupyDriver: device attribute {attr!r}")
        return int(self.props["multiProcessorCount"])

    def compute_capability(self) -> tuple[int, int]:
        return int(self.props["major"]), int(self.props["minor"])

    def name(self) -> str:
        name = self.props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def total_memory(self) -> int:
        return int(self.props["totalGlobalMem"])


class _Function:
    """A kernel called the pycuda way: ``f(*args, block=, grid=)``; CuPy packs numpy scalars by their size."""

    def __init__(self, function):
        self.function = function

    def __call__(self, *args, block, grid, shared=0):
        self.function(tuple(grid), tuple(block), args, shared_mem=shared)


class _Module:
    def __init__(self, module):
        self.module = module  # its functions are valid while it lives

    def get_function(self, name: str) -> _Function:
        return _Function(self.module.get_function(name))


class CupyDriver:
    """The calls of pycuda.driver that ``runtime/cuda_backend.py`` makes, by CuPy (``cupy_module``: the module,
    or None to import it)."""

    device_attribute = SimpleNamespace(MULTIPROCESSOR_COUNT="MULTIPROCESSOR_COUNT")

    def __init__(self, cupy_module=None):
        if cupy_module is None:
            import cupy as cupy_module
        self.cp = cupy_module
        self.runtime = cupy_module.cuda.runtime
        driver = self

        class Device:  # pycuda's Device(i) and Device.count()
            def __new__(cls, index: int):
                return _Device(driver.cp, index)

            @staticmethod
            def count() -> int:
                return driver.runtime.getDeviceCount()

        self.Device = Device

    def init(self):
        self.runtime.getDeviceCount()  # raises when there is no driver

    def mem_alloc(self, nbytes: int) -> _Allocation:
        return _Allocation(self.cp.cuda.alloc(int(nbytes)))

    def memcpy_htod(self, dest, src) -> None:
        if src.nbytes:
            self.runtime.memcpy(int(dest), src.ctypes.data, src.nbytes, HOST_TO_DEVICE)

    def memcpy_dtoh(self, dest, src) -> None:
        if dest.nbytes:
            self.runtime.memcpy(dest.ctypes.data, int(src), dest.nbytes, DEVICE_TO_HOST)

    def memcpy_dtod(self, dest, src, nbytes: int) -> None:
        self.runtime.memcpy(int(dest), int(src), int(nbytes), DEVICE_TO_DEVICE)

    def memset_d32(self, dest, value: int, count: int) -> None:
        if value != 0:  # (sympile clears its error word only; a byte-wise memset is the same for 0)
            raise NotImplementedError("CupyDriver.memset_d32 sets zeros only")
        self.runtime.memset(int(dest), 0, 4 * int(count))

    def module_from_buffer(self, buffer: bytes) -> _Module:
        module = self.cp.cuda.function.Module()
        module.load(bytes(buffer))  # cuModuleLoadData: PTX as a NUL-terminated string, JIT-compiled by the driver
        return _Module(module)

    def get_driver_version(self) -> int:
        return self.runtime.driverGetVersion()

    def get_version(self) -> tuple[int, ...]:
        v = self.runtime.runtimeGetVersion()  # e.g. 13000
        return v // 1000, v % 1000 // 10
