"""The backend registry: a backend turns (inputs, outputs) of an optimized graph into a program."""

from __future__ import annotations

from .interpreter import NumpyProgram

BACKENDS = {"numpy": NumpyProgram}
DEFAULT_BACKEND = "numpy"


def get_backend(name: str | None):
    name = name or DEFAULT_BACKEND
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}") from None
