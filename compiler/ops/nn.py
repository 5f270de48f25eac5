"""Neural-network ops computed stably: softmax and log_softmax along an axis."""

from __future__ import annotations

import numpy as np

from .. import build as b_
from ..optable import OPS, defop
from ..types import TensorType
from .elementwise import float_dtype
from .inference import normalize_axis


def softmax(x, axis=-1):
    """exp(x - max) / sum(exp(x - max)) along ``axis``."""
    x = np.asarray(x, dtype=float_dtype(x))
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along ``axis``, without overflow."""
    x = np.asarray(x, dtype=float_dtype(x))
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _normalize(inputs, attrs):
    x = inputs[0]
    if x.ndim == 0:
        return {"axis": None}
    axis = attrs.get("axis", -1)
    return {"axis": None if axis is None else normalize_axis(axis, x.ndim, allow_tuple=False)[0]}


def _infer(inputs, attrs):
    x = inputs[0]
    return TensorType(float_dtype(np.ones((), x.dtype)), x.shape)


for _name, _fn in (("softmax", softmax), ("log_softmax", log_softmax)):
    defop(
        _name,
        1,
        _infer,
        (lambda fn: lambda attrs, x: fn(x, axis=attrs["axis"]))(_fn),
        "nn",
        normalize=_normalize,
        numpy=_fn,
    )


# --- gradients --------------------------------------------------------------------------------------------------
def _d_softmax(node, g):
    # d softmax: z * (g - sum(g * z)) along the axis
    axis = node.attrs["axis"]
    return [b_.mul(node, b_.sub(g, b_.total(b_.mul(g, node), axis=axis, keepdims=True)))]


def _d_log_softmax(node, g):
    # d log_softmax: g - softmax * sum(g) along the axis
    axis = node.attrs["axis"]
    return [b_.sub(g, b_.mul(b_.exp(node), b_.total(g, axis=axis, keepdims=True)))]


OPS["softmax"].grad = _d_softmax
OPS["log_softmax"].grad = _d_log_softmax
