"""Elementwise ops: numpy broadcasting of the inputs, numpy's dtype rules, numpy's values.

Each row of :data:`ELEMWISE` declares one op: its name and its numpy reference. Shapes broadcast statically
(an error names both shapes); the dtype is what numpy itself returns for the same input dtypes.
"""

from __future__ import annotations

import math

import numpy as np

from .. import build as b_
from ..build import NO_GRAD
from ..graph import const_value, constant_node
from ..optable import OPS, defop
from ..types import TensorType, broadcast_shapes
from .inference import result_dtype


def float_dtype(x) -> np.dtype:
    """The float dtype numpy computes ``exp(x)`` in (int8 -> float16, int32 -> float64, ...)."""
    return np.exp(np.ones((), dtype=np.asarray(x).dtype)).dtype


def _as_float(x) -> np.ndarray:
    return np.asarray(x, dtype=float_dtype(x))


def sigmoid(x):
    """1 / (1 + exp(-x)), accurate to a few ulps over the whole range and never overflowing.

    exp(-|x|) is in [0, 1]: 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0 (there the result is tiny and
    e carries its full relative precision, which exp(-logaddexp(0, -x)) would lose).
    """
    xf = _as_float(x)
    e = np.exp(-np.abs(xf))
    one = xf.dtype.type(1)
    return np.where(xf >= 0, one / (one + e), e / (one + e))


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


# --- scalar lowering: name -> (s, *args) -> value, ``s`` a compiler/llvm/scalar.ScalarBuilder --------------------
# Arguments arrive cast to the op's loop dtypes (numpy's ufunc loop for the node's input dtypes); the result is
# the node's dtype. The same scalar code serves the CPU loops and (later) GPU threads.
_MATH = ["exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sin", "cos", "tan", "arcsin", "arccos", "arctan",
         "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "sigmoid", "softplus", "erf", "erfc"]  # fmt: skip
_COMPARE = {"eq": "==", "neq": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_ROUNDING = {"floor": "floor", "ceil": "ceil", "trunc": "trunc", "round": "roundeven"}


def _lower_compare(op: str):
    return lambda s, a, b: s.compare(op, a, b)


def _lower_math(fn: str):
    return lambda s, a: s.math(fn, a)


def _lower_rounding(fn: str):
    return lambda s, a: s.rounding(fn, a)


LOWER = {
    "add": lambda s, a, b: s.add(a, b),
    "sub": lambda s, a, b: s.sub(a, b),
    "mul": lambda s, a, b: s.mul(a, b),
    "true_div": lambda s, a, b: s.true_div(a, b),
    "floor_div": lambda s, a, b: s.floor_div(a, b),
    "mod": lambda s, a, b: s.mod(a, b),
    "pow": lambda s, a, b: s.pow(a, b),
    "maximum": lambda s, a, b: s.maximum(a, b),
    "minimum": lambda s, a, b: s.minimum(a, b),
    "arctan2": lambda s, a, b: s.math("arctan2", a, b),
    **{name: _lower_compare(op) for name, op in _COMPARE.items()},
    "and_": lambda s, a, b: s.b.and_(a, b),
    "or_": lambda s, a, b: s.b.or_(a, b),
    "xor": lambda s, a, b: s.b.xor(a, b),
    "invert": lambda s, a: s.invert(a),
    "neg": lambda s, a: s.neg(a),
    "abs": lambda s, a: s.abs(a),
    "sign": lambda s, a: s.sign(a),
    "reciprocal": lambda s, a: s.reciprocal(a),
    "sqr": lambda s, a: s.sqr(a),
    "sqrt": lambda s, a: s.sqrt(a),
    **{name: _lower_math(name) for name in _MATH},
    **{name: _lower_rounding(fn) for name, fn in _ROUNDING.items()},
    "isnan": lambda s, a: s.isnan(a),
    "isinf": lambda s, a: s.isinf(a),
    "clip": lambda s, x, lo, hi: s.clip(x, lo, hi),
    "where": lambda s, c, a, b: s.where(c, a, b),
    "cast": lambda s, a: s.cast(a),
}


def _cast_impl(attrs, x):
    return np.asarray(x).astype(attrs["dtype"])


def _cast_infer(inputs, attrs):
    return TensorType(attrs["dtype"], inputs[0].shape)


def _cast_normalize(inputs, attrs):
    return {"dtype": TensorType(attrs["dtype"], ()).dtype}


# cast(x, dtype): numpy's astype (float -> int truncates toward zero; out-of-range values wrap as numpy does)
defop("cast", 1, _cast_infer, _cast_impl, "elemwise", normalize=_cast_normalize)


# --- gradients: name -> (g, z, *inputs) -> one gradient per input, at the output's (broadcast) shape ----------
# ``g`` is the output's cotangent, ``z`` the output. The results are summed back to each input's shape in one
# place (build.unbroadcast); integer and boolean inputs get none whatever is returned for them.
def _d_maximum(g, z, a, b):
    # at ties each side gets half: the average of the one-sided derivatives (as JAX and PyTorch do)
    half = b_.mul(g, 0.5)
    return (b_.where(b_.gt(a, b), g, b_.where(b_.eq(a, b), half, 0)),
            b_.where(b_.lt(a, b), g, b_.where(b_.eq(a, b), half, 0)))  # fmt: skip


def _d_minimum(g, z, a, b):
    half = b_.mul(g, 0.5)
    return (b_.where(b_.lt(a, b), g, b_.where(b_.eq(a, b), half, 0)),
            b_.where(b_.gt(a, b), g, b_.where(b_.eq(a, b), half, 0)))  # fmt: skip


def _d_clip(g, z, x, lo, hi):
    # x inside [lo, hi] (bounds included) moves the output; below or above it, the bound does
    inside = b_.and_(b_.ge(x, lo), b_.le(x, hi))
    return b_.where(inside, g, 0), b_.where(b_.lt(x, lo), g, 0), b_.where(b_.gt(x, hi), g, 0)


def _d_pow(g, z, a, b):
    # d/db a**b = a**b log(a): only defined for a > 0 (a**b with a <= 0 is real only for integer b)
    return b_.mul(g, b_.mul(b, b_.pow_(a, _minus_one(b)))), b_.mul(g, b_.mul(z, b_.log(a)))


def _minus_one(b):
    """``b - 1``; for a constant exponent a constant of the same weakness, so ``x**2`` of a float32 x has a
    float32 gradient (a computed ``2 - 1`` would be a strong int64 tensor and promote it to float64)."""
    value = const_value(b)
    if value is None:
        return b_.sub(b, 1)
    return constant_node(np.asarray(value - 1, dtype=b.dtype), weak=bool(b.attrs.get("weak")))


def _d_arctan2(g, z, y, x):
    r2 = b_.add(b_.sqr(x), b_.sqr(y))
    return b_.div(b_.mul(g, x), r2), b_.neg(b_.div(b_.mul(g, y), r2))


_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)

GRADS = {
    "add": lambda g, z, a, b: (g, g),
    "sub": lambda g, z, a, b: (g, b_.neg(g)),
    "mul": lambda g, z, a, b: (b_.mul(g, b), b_.mul(g, a)),
    "true_div": lambda g, z, a, b: (b_.div(g, b), b_.neg(b_.div(b_.mul(g, z), b))),
    "floor_div": NO_GRAD,
    "mod": lambda g, z, a, b: (g, b_.neg(b_.mul(g, b_.floor_div(a, b)))),  # a % b = a - b * floor(a / b)
    "pow": _d_pow,
    "maximum": _d_maximum,
    "minimum": _d_minimum,
    "arctan2": _d_arctan2,
    **dict.fromkeys(["eq", "neq", "lt", "le", "gt", "ge", "and_", "or_", "xor", "invert"], NO_GRAD),
    "neg": lambda g, z, a: (b_.neg(g),),
    "abs": lambda g, z, a: (b_.mul(g, b_.sign(a)),),  # 0 at a == 0
    "sign": NO_GRAD,
    "reciprocal": lambda g, z, a: (b_.neg(b_.mul(g, b_.sqr(z))),),
    "sqr": lambda g, z, a: (b_.mul(b_.mul(g, a), 2),),
    "sqrt": lambda g, z, a: (b_.div(b_.mul(g, 0.5), z),),
    "exp": lambda g, z, a: (b_.mul(g, z),),
    "exp2": lambda g, z, a: (b_.mul(b_.mul(g, z), math.log(2)),),
    "expm1": lambda g, z, a: (b_.mul(g, b_.add(z, 1)),),
    "log": lambda g, z, a: (b_.div(g, a),),
    "log2": lambda g, z, a: (b_.div(g, b_.mul(a, math.log(2))),),
    "log10": lambda g, z, a: (b_.div(g, b_.mul(a, math.log(10))),),
    "log1p": lambda g, z, a: (b_.div(g, b_.add(a, 1)),),
    "sin": lambda g, z, a: (b_.mul(g, b_.cos(a)),),
    "cos": lambda g, z, a: (b_.neg(b_.mul(g, b_.sin(a))),),
    "tan": lambda g, z, a: (b_.mul(g, b_.add(b_.sqr(z), 1)),),
    "arcsin": lambda g, z, a: (b_.div(g, b_.sqrt(b_.sub(1, b_.sqr(a)))),),
    "arccos": lambda g, z, a: (b_.neg(b_.div(g, b_.sqrt(b_.sub(1, b_.sqr(a))))),),
    "arctan": lambda g, z, a: (b_.div(g, b_.add(b_.sqr(a), 1)),),
    "sinh": lambda g, z, a: (b_.mul(g, b_.cosh(a)),),
    "cosh": lambda g, z, a: (b_.mul(g, b_.sinh(a)),),
    "tanh": lambda g, z, a: (b_.mul(g, b_.sub(1, b_.sqr(z))),),
    "arcsinh": lambda g, z, a: (b_.div(g, b_.sqrt(b_.add(b_.sqr(a), 1))),),
    "arccosh": lambda g, z, a: (b_.div(g, b_.sqrt(b_.sub(b_.sqr(a), 1))),),
    "arctanh": lambda g, z, a: (b_.div(g, b_.sub(1, b_.sqr(a))),),
    "sigmoid": lambda g, z, a: (b_.mul(g, b_.mul(z, b_.sub(1, z))),),
    "softplus": lambda g, z, a: (b_.mul(g, b_.sigmoid(a)),),
    "erf": lambda g, z, a: (b_.mul(g, b_.mul(b_.exp(b_.neg(b_.sqr(a))), _TWO_OVER_SQRT_PI)),),
    "erfc": lambda g, z, a: (b_.mul(g, b_.mul(b_.exp(b_.neg(b_.sqr(a))), -_TWO_OVER_SQRT_PI)),),
    **dict.fromkeys(["floor", "ceil", "trunc", "round", "isnan", "isinf"], NO_GRAD),
    "clip": _d_clip,
    "where": lambda g, z, c, a, b: (None, b_.where(c, g, 0), b_.where(c, 0, g)),
    "cast": lambda g, z, a: (g,),  # float -> float; integer inputs or outputs carry no gradient anyway
}


def _elemwise_grad(fn):
    def rule(node, g):
        grads = fn(g, node, *node.inputs)
        return [None if gi is None else b_.unbroadcast(gi, x, node.inputs) for gi, x in zip(grads, node.inputs)]

    return rule


for _name, _rule in GRADS.items():
    OPS[_name].grad = _rule if _rule is NO_GRAD else _elemwise_grad(_rule)
