"""Elementwise ops: numpy broadcasting of the inputs, numpy's dtype rules, numpy's values.

Each row of :data:`ELEMWISE` declares one op: its name and its numpy reference. Shapes broadcast statically
(an error names both shapes); the dtype is what numpy itself returns for the same input dtypes.
"""

from __future__ import annotations

import math

import numpy as np

from ..optable import defop
from ..types import TensorType, broadcast_shapes
from .inference import result_dtype


def float_dtype(x) -> np.dtype:
    """The float dtype numpy computes ``exp(x)`` in (int8 -> float16, int32 -> float64, ...)."""
    return np.exp(np.ones((), dtype=np.asarray(x).dtype)).dtype


def _as_float(x) -> np.ndarray:
    return np.asarray(x, dtype=float_dtype(x))


def sigmoid(x):
    """1 / (1 + exp(-x)), accurate over the whole range (via logaddexp, never overflows)."""
    xf = _as_float(x)
    return np.exp(-np.logaddexp(xf.dtype.type(0), -xf))


def softplus(x):
    """log(1 + exp(x)) without overflow."""
    xf = _as_float(x)
    return np.logaddexp(xf.dtype.type(0), xf)


def _from_float64(fn):
    vec = np.frompyfunc(fn, 1, 1)

    def impl(x):
        xf = _as_float(x)
        out = vec(xf.astype(np.float64))
        return np.asarray(out, dtype=np.float64).astype(xf.dtype)

    impl.__name__ = fn.__name__
    return impl


erf = _from_float64(math.erf)
erfc = _from_float64(math.erfc)

# name: (numpy reference, arity). The Python operator each one backs is noted where there is one.
ELEMWISE = {
    "add": (np.add, 2),  # +
    "sub": (np.subtract, 2),  # -
    "mul": (np.multiply, 2),  # *
    "true_div": (np.true_divide, 2),  # /
    "floor_div": (np.floor_divide, 2),  # //
    "mod": (np.remainder, 2),  # %
    "pow": (np.power, 2),  # **
    "maximum": (np.maximum, 2),
    "minimum": (np.minimum, 2),
    "arctan2": (np.arctan2, 2),
    "eq": (np.equal, 2),
    "neq": (np.not_equal, 2),
    "lt": (np.less, 2),  # <
    "le": (np.less_equal, 2),  # <=
    "gt": (np.greater, 2),  # >
    "ge": (np.greater_equal, 2),  # >=
    "and_": (np.bitwise_and, 2),  # &
    "or_": (np.bitwise_or, 2),  # |
    "xor": (np.bitwise_xor, 2),  # ^
    "invert": (np.invert, 1),  # ~
    "neg": (np.negative, 1),  # unary -
    "abs": (np.absolute, 1),  # abs()
    "sign": (np.sign, 1),
    "reciprocal": (np.reciprocal, 1),
    "sqr": (np.square, 1),
    "sqrt": (np.sqrt, 1),
    "exp": (np.exp, 1),
    "exp2": (np.exp2, 1),
    "expm1": (np.expm1, 1),
    "log": (np.log, 1),
    "log2": (np.log2, 1),
    "log10": (np.log10, 1),
    "log1p": (np.log1p, 1),
    "sin": (np.sin, 1),
    "cos": (np.cos, 1),
    "tan": (np.tan, 1),
    "arcsin": (np.arcsin, 1),
    "arccos": (np.arccos, 1),
    "arctan": (np.arctan, 1),
    "sinh": (np.sinh, 1),
    "cosh": (np.cosh, 1),
    "tanh": (np.tanh, 1),
    "arcsinh": (np.arcsinh, 1),
    "arccosh": (np.arccosh, 1),
    "arctanh": (np.arctanh, 1),
    "sigmoid": (sigmoid, 1),
    "softplus": (softplus, 1),
    "erf": (erf, 1),
    "erfc": (erfc, 1),
    "floor": (np.floor, 1),
    "ceil": (np.ceil, 1),
    "trunc": (np.trunc, 1),
    "round": (np.round, 1),  # half to even, as numpy
    "isnan": (np.isnan, 1),
    "isinf": (np.isinf, 1),
    "clip": (np.clip, 3),
    "where": (np.where, 3),
}


def _infer(fn):
    def infer(inputs, attrs):
        shape = broadcast_shapes(*(i.shape for i in inputs))
        return TensorType(result_dtype(fn, inputs), shape)

    return infer


def _impl(fn):
    return lambda attrs, *xs: fn(*xs)


for _name, (_fn, _arity) in ELEMWISE.items():
    defop(_name, _arity, _infer(_fn), _impl(_fn), "elemwise", doc=getattr(_fn, "__doc__", "") or "", numpy=_fn)


def _cast_impl(attrs, x):
    return np.asarray(x).astype(attrs["dtype"])


def _cast_infer(inputs, attrs):
    return TensorType(attrs["dtype"], inputs[0].shape)


def _cast_normalize(inputs, attrs):
    return {"dtype": TensorType(attrs["dtype"], ()).dtype}


# cast(x, dtype): numpy's astype (float -> int truncates toward zero; out-of-range values wrap as numpy does)
defop("cast", 1, _cast_infer, _cast_impl, "elemwise", normalize=_cast_normalize)
