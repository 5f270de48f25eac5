"""The BLAS that numpy itself loaded, called directly: its cblas ``?gemm`` entry and how it reads an operand.

A replayed call (replay.py) computes its matrix products by calling ``gemm`` from native code, with no Python
in between. The library is the OpenBLAS that numpy's wheels ship (``numpy.libs``), found among the libraries
this process has loaded, with its 64-bit-integer interface; :func:`gemm_address` is ``None`` where there is none
(numpy built against Accelerate or MKL, another OS), and such calls are not replayed.
"""

from __future__ import annotations

import ctypes
import functools
import os

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
#: cblas ``?gemm`` symbols with 64-bit sizes (the driver's ABI): numpy's own OpenBLAS build, then a plain ILP64 one
_SYMBOLS = ("scipy_cblas_{t}gemm64_", "cblas_{t}gemm64_")


def _loaded_blas_paths() -> list[str]:
    """Shared libraries mapped into this process whose name says OpenBLAS (numpy loaded its BLAS on import)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split(None, 5)[-1].strip() for line in f if ".so" in line}
    except OSError:
        return []
    return sorted(p for p in paths if "openblas" in os.path.basename(p).lower())


@functools.cache
def gemm_address(dtype: str) -> int | None:
    """The address of numpy's BLAS ``cblas_?gemm`` (64-bit sizes) for ``dtype`` (float32/float64), or ``None``."""
    if dtype not in ("float32", "float64"):
        return None
    import numpy.linalg  # noqa: F401, PLC0415  (loads numpy's BLAS, if it has one)

    for path in _loaded_blas_paths():
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | os.RTLD_LOCAL)
        except OSError:
            continue
        for pattern in _SYMBOLS:
            fn = getattr(lib, pattern.format(t="s" if dtype == "float32" else "d"), None)
            if fn is not None:
                return ctypes.cast(fn, ctypes.c_void_p).value
    return None


@functools.cache
def gemm_function(dtype: str):
    """numpy's BLAS ``cblas_?gemm`` for ``dtype`` as a ctypes function (it releases the GIL), or ``None``."""
    address = gemm_address(dtype)
    if address is None:
        return None
    scalar, size = (ctypes.c_float if dtype == "float32" else ctypes.c_double), ctypes.c_int64
    pointer = ctypes.c_void_p
    return ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, size, size, size, scalar, pointer, size,
                            pointer, size, scalar, pointer, size)(address)  # fmt: skip


def operand_layout(a: np.ndarray) -> tuple[int, int] | None:
    """``(transpose flag, leading dimension)`` under which BLAS reads the 2-d ``a`` in place, or ``None`` where
    its strides do not fit.

    >>> operand_layout(np.zeros((3, 4), np.float32)), operand_layout(np.zeros((3, 4), np.float32).T)
    ((111, 4), (112, 4))
    """
    if a.strides[0] % a.itemsize or a.strides[1] % a.itemsize:
        return None
    rows, cols = a.shape
    s0, s1 = a.strides[0] // a.itemsize, a.strides[1] // a.itemsize
    # a dimension of length 1 has any stride: it is never stepped along
    if (cols == 1 or s1 == 1) and (rows == 1 or s0 >= max(1, cols)):
        return NO_TRANS, s0 if rows > 1 else max(1, cols)
    if (rows == 1 or s0 == 1) and (cols == 1 or s1 >= max(1, rows)):
        return TRANS, s1 if cols > 1 else max(1, rows)
    return None
