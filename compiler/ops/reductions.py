"""Reductions over axes (int, tuple or None) with ``keepdims``, as numpy computes them."""

from __future__ import annotations

import functools

import numpy as np

from ..optable import defop
from ..types import TensorType
from .inference import normalize_axis, result_dtype


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) computed stably: the max is taken out first (inf and -inf handled)."""
    x = np.asarray(x)
    x = x.astype(np.exp(np.ones((), x.dtype)).dtype, copy=False)
    if x.size == 0:
        return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


# name: (numpy reference taking axis= and keepdims=, whether a tuple of axes is allowed, extra attrs)
REDUCTIONS = {
    "sum": (np.sum, True),
    "prod": (np.prod, True),
    "mean": (np.mean, True),
    "max": (np.max, True),
    "min": (np.min, True),
    "all": (np.all, True),
    "any": (np.any, True),
    "var": (np.var, True),
    "std": (np.std, True),
    "argmax": (np.argmax, False),
    "argmin": (np.argmin, False),
    "logsumexp": (logsumexp, True),
}


def reduced_shape(shape, axes, keepdims):
    axes = range(len(shape)) if axes is None else axes
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _normalize(allow_tuple):
    def normalize(inputs, attrs):
        out = {"axis": normalize_axis(attrs.get("axis"), inputs[0].ndim, allow_tuple)}
        out["keepdims"] = bool(attrs.get("keepdims", False))
        if "ddof" in attrs:
            out["ddof"] = int(attrs["ddof"])
        return out

    return normalize


def _call(fn, attrs, x):
    axis = attrs["axis"]
    if axis is not None and fn in (np.argmax, np.argmin):
        axis = axis[0]
    kwargs = {"ddof": attrs["ddof"]} if "ddof" in attrs else {}
    return fn(x, axis=axis, keepdims=attrs["keepdims"], **kwargs)


def _infer(fn):
    caller = functools.partial(_call, fn)  # one object per op, so result_dtype's cache can key on it

    def infer(inputs, attrs):
        dtype = result_dtype(caller, inputs, attrs, ndim0=False)
        return TensorType(dtype, reduced_shape(inputs[0].shape, attrs["axis"], attrs["keepdims"]))

    return infer


for _name, (_fn, _tuple_ok) in REDUCTIONS.items():
    defop(
        _name,
        1,
        _infer(_fn),
        functools.partial(_call, _fn),
        "reduce",
        normalize=_normalize(_tuple_ok),
        numpy=_fn,
    )
