"""Linear algebra: dot (np.dot's rules), matmul (np.matmul's rules, batched), tensordot."""

from __future__ import annotations

import numpy as np

from ..errors import GraphTypeError, GraphValueError
from ..optable import defop
from ..types import TensorType, broadcast_shapes, shape_str
from .inference import normalize_axis, result_dtype


def _check_same(da, db, a_shape, b_shape):
    if da is not None and db is not None and da != db:
        raise GraphValueError(f"shapes {shape_str(a_shape)} and {shape_str(b_shape)} are not aligned: {da} != {db}")


def _dot_infer(inputs, attrs):
    a, b = inputs
    dtype = result_dtype(np.dot, inputs)
    if a.ndim == 0 or b.ndim == 0:
        return TensorType(dtype, a.shape if b.ndim == 0 else b.shape)
    kb = -2 if b.ndim >= 2 else -1
    _check_same(a.shape[-1], b.shape[kb], a.shape, b.shape)
    b_rest = b.shape[:-2] + b.shape[-1:] if b.ndim >= 2 else ()
    return TensorType(dtype, a.shape[:-1] + b_rest)


defop("dot", 2, _dot_infer, lambda attrs, a, b: np.dot(a, b), "linalg")


def _matmul_infer(inputs, attrs):
    a, b = inputs
    if a.ndim == 0 or b.ndim == 0:
        raise GraphValueError("matmul does not accept scalars (use * or dot)")
    dtype = result_dtype(np.matmul, inputs, ndim0=False)
    ash = a.shape if a.ndim >= 2 else (1,) + a.shape
    bsh = b.shape if b.ndim >= 2 else b.shape + (1,)
    _check_same(ash[-1], bsh[-2], a.shape, b.shape)
    batch = broadcast_shapes(ash[:-2], bsh[:-2], where=" (matmul batch dimensions)")
    core = (ash[-2] if a.ndim >= 2 else None, bsh[-1] if b.ndim >= 2 else None)
    return TensorType(dtype, batch + tuple(d for d, keep in zip(core, (a.ndim >= 2, b.ndim >= 2)) if keep))


defop("matmul", 2, _matmul_infer, lambda attrs, a, b: np.matmul(a, b), "linalg")


def _tensordot_normalize(inputs, attrs):
    a, b = inputs
    axes = attrs.get("axes", 2)
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > min(a.ndim, b.ndim):
            raise GraphValueError(f"axes={n} is out of range for ranks {a.ndim} and {b.ndim}")
        pair = (tuple(range(a.ndim - n, a.ndim)), tuple(range(n)))
    else:
        try:
            xa, xb = axes
        except (TypeError, ValueError):
            raise GraphTypeError(f"axes must be an int or a pair of axis lists, got {axes!r}") from None
        xa = (xa,) if isinstance(xa, (int, np.integer)) else tuple(xa)
        xb = (xb,) if isinstance(xb, (int, np.integer)) else tuple(xb)
        if len(xa) != len(xb):
            raise GraphValueError(f"axes {axes!r} must have the same length on both sides")
        pair = (
            tuple(int(x) % a.ndim for x in xa) if xa else (),
            tuple(int(x) % b.ndim for x in xb) if xb else (),
        )
        for x, nd in ((xa, a.ndim), (xb, b.ndim)):
            if x:
                normalize_axis(tuple(x), nd)
    return {"axes": pair}


def _tensordot_infer(inputs, attrs):
    a, b = inputs
    xa, xb = attrs["axes"]
    for i, j in zip(xa, xb):
        _check_same(a.shape[i], b.shape[j], a.shape, b.shape)
    shape = tuple(d for i, d in enumerate(a.shape) if i not in xa) + tuple(
        d for j, d in enumerate(b.shape) if j not in xb
    )
    return TensorType(result_dtype(np.dot, inputs), shape)


defop(
    "tensordot",
    2,
    _tensordot_infer,
    lambda attrs, a, b: np.asarray(np.tensordot(a, b, axes=[list(x) for x in attrs["axes"]])),
    "linalg",
    normalize=_tensordot_normalize,
)
