"""Reductions over axes (int, tuple or None) with ``keepdims``, as numpy computes them."""

from __future__ import annotations

import functools

import numpy as np

from .. import build as b_
from ..build import NO_GRAD
from ..errors import GraphTypeError
from ..optable import OPS, defop
from ..types import TensorType, as_dtype
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
        if "ddof" in attrs:  # numpy takes any real ddof (0.5 included); keep ints as ints
            ddof = attrs["ddof"]
            if isinstance(ddof, (bool, np.bool_)) or not isinstance(ddof, (int, float, np.integer, np.floating)):
                raise GraphTypeError(f"ddof must be a number, got {ddof!r}")
            out["ddof"] = int(ddof) if float(ddof).is_integer() else float(ddof)
        if attrs.get("dtype") is not None:  # sum/prod/mean(x, dtype=): numpy accumulates and returns in it
            out["dtype"] = as_dtype(attrs["dtype"]).name
        return out

    return normalize


def _call(fn, attrs, x):
    axis = attrs["axis"]
    if axis is not None and fn in (np.argmax, np.argmin):
        axis = axis[0]
    kwargs = {k: attrs[k] for k in ("ddof", "dtype") if k in attrs}
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


# --- gradients ------------------------------------------------------------------------------------------------
# Each rule takes the reduction ``node`` and the cotangent ``g`` of its output. ``_spread`` puts a per-group
# value back at every element of its group (the keepdims form, broadcast to the input's shape).
def _spread(node, value):
    x = node.inputs[0]
    return b_.broadcast_like(b_.restore_axes(value, node.attrs["axis"], x.ndim, node.attrs["keepdims"]), x)


def _kept(node, value):
    """A per-group value (the output, or the cotangent) in keepdims form, to broadcast against the input."""
    return b_.restore_axes(value, node.attrs["axis"], node.inputs[0].ndim, node.attrs["keepdims"])


def _d_mean(node, g):
    x = node.inputs[0]
    return [_spread(node, b_.div(g, b_.count(x, node.attrs["axis"], g.dtype)))]


def _d_prod(node, g):
    # prod(x) / x fails where x has zeros. Per group: with no zero, d/dx_i = prod / x_i; with exactly one
    # zero, only that element has a gradient, the product of the others; with two or more, all are zero.
    x = node.inputs[0]
    axis = node.attrs["axis"]
    is_zero = b_.eq(x, 0)
    nonzero = b_.where(is_zero, 1, x)
    prod_nonzero = b_.ap("prod", nonzero, axis=axis, keepdims=True)
    zeros = b_.total(b_.cast(is_zero, "int64"), axis=axis, keepdims=True)
    only_zero = b_.where(b_.and_(is_zero, b_.eq(zeros, 1)), prod_nonzero, 0)
    local = b_.where(b_.eq(zeros, 0), b_.div(prod_nonzero, nonzero), only_zero)
    return [b_.mul(_kept(node, g), local)]


def _d_extremum(node, g):
    # the gradient goes to the elements equal to the max (min); ties share it equally, as in JAX
    x = node.inputs[0]
    hit = b_.eq(x, _kept(node, node))
    ties = b_.total(b_.cast(hit, g.dtype), axis=node.attrs["axis"], keepdims=True)
    return [b_.where(hit, b_.div(_kept(node, g), ties), 0)]


def _centered(node, g_dtype):
    x = node.inputs[0]
    axis = node.attrs["axis"]
    mean = b_.div(b_.total(x, axis=axis, keepdims=True), b_.count(x, axis, x.dtype))
    dof = b_.sub(b_.count(x, axis, g_dtype), node.attrs.get("ddof", 0))
    return b_.sub(x, mean), dof


def _d_var(node, g):
    centered, dof = _centered(node, g.dtype)
    return [b_.mul(_kept(node, b_.div(b_.mul(g, 2), dof)), centered)]


def _d_std(node, g):
    centered, dof = _centered(node, g.dtype)
    return [b_.mul(_kept(node, b_.div(g, b_.mul(dof, node))), centered)]


def _d_logsumexp(node, g):
    return [b_.mul(_kept(node, g), b_.exp(b_.sub(node.inputs[0], _kept(node, node))))]


GRADS = {
    "sum": lambda node, g: [_spread(node, g)],
    "mean": _d_mean,
    "prod": _d_prod,
    "max": _d_extremum,
    "min": _d_extremum,
    "var": _d_var,
    "std": _d_std,
    "logsumexp": _d_logsumexp,
    **dict.fromkeys(["all", "any", "argmax", "argmin"], NO_GRAD),
}
for _name, _rule in GRADS.items():
    OPS[_name].grad = _rule
