"""Gates for the optional peer libraries: each returns the module or raises ``Unavailable`` with the reason.

>>> try:
...     ne = numexpr()
... except Unavailable as exc:
...     print(exc)  # e.g. "numexpr: not installed (pip install -e '.[bench]')"
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from types import ModuleType

import numpy as np


class Unavailable(Exception):
    """An implementation that cannot run here; the message says why and goes into the table."""


_MODULES: dict[str, ModuleType | Unavailable] = {}


def _load(name: str, setup=None) -> ModuleType:
    if name not in _MODULES:
        try:
            module = importlib.import_module(name)
            if setup is not None:
                setup(module)
            _MODULES[name] = module
        except ImportError as exc:
            hint = " (pip install -e '.[bench]')" if isinstance(exc, ModuleNotFoundError) else ""
            _MODULES[name] = Unavailable(f"{name}: not installed{hint}: {exc}")
        except Exception as exc:  # a broken install (e.g. numba against the wrong llvmlite) is not our failure
            _MODULES[name] = Unavailable(f"{name}: import failed: {type(exc).__name__}: {exc}")
    found = _MODULES[name]
    if isinstance(found, Unavailable):
        raise found
    return found


def numexpr() -> ModuleType:
    """numexpr, using every core."""
    return _load("numexpr", lambda ne: ne.set_num_threads(os.cpu_count() or 1))


def numba() -> ModuleType:
    """numba (its parallel loops use every core: NUMBA_NUM_THREADS is set by ``machine``)."""
    return _load("numba")


def _pytensor_setup(pt) -> None:
    # Without a C++ compiler PyTensor falls back to slow Python loops: a row labelled "PyTensor" must be its C code.
    if not pt.config.cxx:
        raise ImportError(f"PyTensor has no C++ compiler (cxx={pt.config.cxx!r}; g++ found: {shutil.which('g++')})")


def pytensor() -> ModuleType:
    """pytensor with its C backend (the default linker when a C++ compiler is configured)."""
    return _load("pytensor", _pytensor_setup)


def _jax_setup(jax) -> None:
    # float64 workloads must run in float64 (JAX silently computes in float32 otherwise).
    jax.config.update("jax_enable_x64", True)


def jax() -> ModuleType:
    """jax with 64-bit floats enabled."""
    return _load("jax", _jax_setup)


def versions() -> dict[str, str]:
    """The version of each peer, or why it is missing; imports them all."""
    out = {"python": sys.version.split()[0], "numpy": np.__version__}
    for name, gate in (("numexpr", numexpr), ("numba", numba), ("pytensor", pytensor), ("jax", jax)):
        try:
            out[name] = getattr(gate(), "__version__", "?")
        except Unavailable as exc:
            out[name] = f"unavailable ({exc})"
    return out
