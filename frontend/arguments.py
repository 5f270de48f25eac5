"""Checking and converting the values users pass to functions and shared variables.

Array-likes are accepted and cast when the cast keeps the values: bool -> int -> float widen freely; a
narrower integer type takes the data if every value fits; float64 data goes into float32 inputs (same kind).
Float data into an integer input, integers into bool, strings or objects raise a TypeError naming the input.
"""

from __future__ import annotations

import numpy as np

from sympile.compiler.errors import GraphTypeError, GraphValueError
from sympile.compiler.types import TensorType, shape_str


def convert_argument(value, type_: TensorType, label: str) -> np.ndarray:
    """``value`` as an array of ``type_``'s dtype and rank, or a TypeError/ValueError naming ``label``.

    >>> convert_argument([1, 2], TensorType("float64", (None,)), "input 0 ('x')").dtype
    dtype('float64')
    """
    want = type_.np_dtype
    if isinstance(value, np.ndarray):
        # a subclass (np.matrix keeps 2-d through reductions) would change what the numpy reference ops return
        arr = value if type(value) is np.ndarray else np.asarray(value)
    else:
        if isinstance(value, (str, bytes)) or value is None:
            raise GraphTypeError(f"{label}: expected {type_.short()} data, got {type(value).__name__} {value!r}")
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise GraphTypeError(f"{label}: cannot convert {type(value).__name__} to an array: {exc}") from None
        if arr.size == 0 and arr.dtype == np.float64:
            arr = arr.astype(want)  # an empty list is float64 only by numpy's default: it holds no value to lose
    if arr.dtype.kind not in "biuf":
        raise GraphTypeError(f"{label}: expected {type_.short()} data, got an array of dtype {arr.dtype}")
    if arr.ndim != type_.ndim:
        raise GraphTypeError(
            f"{label}: expected a tensor of rank {type_.ndim} ({type_.short()}), "
            f"got rank {arr.ndim} with shape {shape_str(arr.shape)}"
        )
    if not type_.accepts_shape(arr.shape):
        raise GraphValueError(f"{label}: expected shape {shape_str(type_.shape)}, got {shape_str(arr.shape)}")
    if arr.dtype != want:
        arr = _cast(arr, want, type_, label)
    return arr


def _cast(arr: np.ndarray, want: np.dtype, type_: TensorType, label: str) -> np.ndarray:
    src = arr.dtype
    lossy = f"{label}: expected {type_.short()}, got {src.name} data; casting would lose information"
    if np.can_cast(src, want, "safe"):
        return arr.astype(want)
    if src.kind == "f" and want.kind in "biu":
        raise GraphTypeError(lossy + " (cast it explicitly, e.g. with .astype)")
    if want.kind == "b":
        raise GraphTypeError(lossy)
    if want.kind in "iu" and src.kind in "biu":
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise GraphTypeError(f"{label}: values out of the range of {want.name}")
        return arr.astype(want)
    if want.kind == "f" and src.kind in "biuf":
        return arr.astype(want)  # same kind (float64 -> float32) or wide integers into floats, as numpy assigns
    raise GraphTypeError(lossy)
