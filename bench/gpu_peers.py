"""Gates for the GPU benchmark: sympile's CUDA device, CuPy and PyTorch on the same GPU, and device results the
harness can check.

Each gate returns what it gates or raises ``peers.Unavailable`` with the reason, which goes into the row, as the
CPU peers' gates do (``peers._load`` is reused, so a missing module says ``not installed``).

>>> try:  # doctest: +SKIP
...     cupy()
... except Unavailable as exc:
...     print(exc)  # e.g. "cupy: not installed (pip install cupy-cuda12x or cupy-cuda13x): ..."
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
from peers import Unavailable, _load

_BENCH_HINT = " (pip install -e '.[bench]')"  # peers._load's hint, right for the CPU peers only


def _gpu_load(name: str, hint: str, setup=None) -> ModuleType:
    """``peers._load`` with this peer's install hint."""
    try:
        return _load(name, setup)
    except Unavailable as exc:
        raise Unavailable(str(exc).replace(_BENCH_HINT, f" ({hint})")) from None


def sympile_device():
    """sympile's CUDA device (``runtime.cuda_backend.Device``: ``drv``, ``context``, ``device``), the one every
    ``backend='cuda'`` function uses; raises ``Unavailable`` saying why when pycuda or a GPU is missing.

    Under ``cuda_backend.use_driver(fake)`` it is the fake driver's device (the smoke test's)."""
    from sympile.runtime import cuda_backend

    try:
        return cuda_backend._device()
    except cuda_backend.CudaUnavailable as exc:
        raise Unavailable(str(exc)) from None


def sympile_sync() -> None:
    """Wait for every kernel sympile launched (pycuda launches are asynchronous on the default stream)."""
    sympile_device().context.synchronize()


def _cupy_setup(cp) -> None:
    # A CuPy that imports but sees no device must not become a row of errors: say so once.
    if cp.cuda.runtime.getDeviceCount() < 1:
        raise RuntimeError("CuPy sees no CUDA device")


def cupy() -> ModuleType:
    """CuPy, on a machine where it sees a GPU."""
    return _gpu_load("cupy", "pip install cupy-cuda12x or cupy-cuda13x", _cupy_setup)


def cupy_sync() -> None:
    cupy().cuda.Device().synchronize()


def _torch_setup(torch) -> None:
    if not torch.cuda.is_available():
        raise RuntimeError(f"torch {torch.__version__} sees no CUDA device (a CPU-only build?)")


def torch() -> ModuleType:
    """PyTorch with CUDA, on a machine where it sees a GPU."""
    return _gpu_load("torch", "pip install torch", _torch_setup)


def torch_sync() -> None:
    torch().cuda.synchronize()


class OnDevice:
    """A result left in GPU memory; the harness's check (``np.asarray``) copies it to the host, the timed calls
    never do.

    >>> np.asarray(OnDevice(lambda: np.arange(3))).tolist()
    [0, 1, 2]
    """

    __slots__ = ("fetch",)

    def __init__(self, fetch):
        self.fetch = fetch

    def __array__(self, dtype=None, copy=None):
        a = np.asarray(self.fetch())
        return a if dtype is None else a.astype(dtype)


def cupy_host(a) -> OnDevice:
    return OnDevice(a.get)


def torch_host(t) -> OnDevice:
    return OnDevice(lambda: t.detach().cpu().numpy())


def describe_gpu() -> str:
    """One line: the GPU sympile uses (name, compute capability, memory, multiprocessors, driver)."""
    dev = sympile_device()
    drv, d = dev.drv, dev.device
    parts = []
    for label, get in (
        ("", lambda: d.name()),
        ("sm_", lambda: "".join(map(str, d.compute_capability()))),
        ("", lambda: f"{d.total_memory() / 2**30:.0f} GiB"),
        ("", lambda: f"{dev.sm_count} multiprocessors"),
        ("CUDA driver ", lambda: drv.get_driver_version()),
        ("pycuda built for CUDA ", lambda: ".".join(map(str, drv.get_version()))),
    ):
        try:
            parts.append(f"{label}{get()}")
        except Exception:  # noqa: BLE001  (a fake or partial driver lacks some of these: show what there is)
            continue
    return f"GPU: {', '.join(parts)}; sympile targets {dev.arch}"


def versions() -> dict[str, str]:
    """pycuda's, CuPy's and PyTorch's versions, or why each is missing."""
    out = {}
    for name, gate in (
        ("pycuda", lambda: _gpu_load("pycuda", "pip install sympile[cuda]")),
        ("cupy", cupy),
        ("torch", torch),
    ):
        try:
            out[name] = getattr(gate(), "__version__", None) or getattr(gate(), "VERSION_TEXT", "?")
        except Unavailable as exc:
            out[name] = f"unavailable ({exc})"
    return out
