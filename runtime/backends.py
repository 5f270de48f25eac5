"""The backend registry: a backend turns (inputs, outputs) of an optimized graph into a program."""

from __future__ import annotations

from .interpreter import NumpyProgram


def _cpu_program(inputs, outputs):
    # imported on first use: loading llvmlite's binding costs ~100 ms, which numpy-backend users need not pay
    from .cpu_backend import CpuProgram  # noqa: PLC0415

    return CpuProgram(inputs, outputs)


def _cuda_program(inputs, outputs):
    # imported on first use: pycuda (imported by CudaProgram) is optional; without it this raises CudaUnavailable
    from .cuda_backend import CudaProgram  # noqa: PLC0415

    return CudaProgram(inputs, outputs)


BACKENDS = {"numpy": NumpyProgram, "cpu": _cpu_program, "cuda": _cuda_program}
DEFAULT_BACKEND = "cpu"


def get_backend(name: str | None):
    name = name or DEFAULT_BACKEND
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}") from None
