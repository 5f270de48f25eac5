"""Static tensor types: a dtype plus a shape whose entries are ints or ``None`` (unknown).

A dimension of static size 1 broadcasts, as in numpy.

>>> TensorType("float64", (None, 3))
TensorType(float64, (?, 3))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import GraphTypeError, GraphValueError

#: dtypes sympile accepts, grouped as numpy's kinds: b=bool, i/u=integers, f=floats.
SUPPORTED_KINDS = "biuf"


def as_dtype(dtype) -> np.dtype:
    """Normalise a dtype-like to a supported numpy dtype, rejecting complex, object and strings."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise GraphTypeError(f"{dtype!r} is not a dtype") from exc
    if dt.kind not in SUPPORTED_KINDS:
        what = "complex dtypes are not supported yet" if dt.kind == "c" else "only numeric dtypes are supported"
        raise GraphTypeError(f"dtype {dt.name}: {what} (bool, integers and floats are)")
    return dt


def shape_str(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


@dataclass(frozen=True)
class TensorType:
    """dtype (a numpy dtype name) and static shape (ints, ``None`` where unknown)."""

    dtype: str
    shape: tuple

    def __post_init__(self):
        object.__setattr__(self, "dtype", as_dtype(self.dtype).name)
        shape = tuple(None if d is None else int(d) for d in self.shape)
        if any(d is not None and d < 0 for d in shape):
            raise GraphTypeError(f"negative dimension in static shape {shape}")
        object.__setattr__(self, "shape", shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def broadcastable(self) -> tuple:
        return tuple(d == 1 for d in self.shape)

    def __repr__(self) -> str:
        return f"TensorType({self.dtype}, {shape_str(self.shape)})"

    def short(self) -> str:
        """Compact form used in printing: ``float64[?,3]``."""
        return f"{self.dtype}[{','.join('?' if d is None else str(d) for d in self.shape)}]"

    def accepts_shape(self, shape) -> bool:
        """Whether a concrete shape fits this static shape."""
        return len(shape) == self.ndim and all(s is None or s == d for s, d in zip(self.shape, shape))


def broadcast_shapes(*shapes, where: str = "") -> tuple:
    """numpy broadcasting of static shapes; ``None`` is unknown. Raises naming all the shapes.

    >>> broadcast_shapes((None, 1), (3,))
    (None, 3)
    """
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        dims = [s[len(s) - ndim + axis] for s in shapes if len(s) - ndim + axis >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            shown = " and ".join(shape_str(s) for s in shapes)
            raise GraphValueError(f"shapes {shown} do not broadcast{where}")
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)
