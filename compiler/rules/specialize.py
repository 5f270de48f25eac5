"""Cheaper forms of the same computation: small integer powers as multiplications, sqrt, sqr, reciprocal.

The base is first cast to the power's result dtype, so ``int_x ** 2.0`` still computes in float64.
"""

from __future__ import annotations

from ..graph import Node, const_value
from ..rewrite import P, Rule
from .blocks import absorbed, as_dtype_of, is_float, mk


def _small_power(n: Node, x: Node, c: Node) -> Node | None:
    """x**k for k in {2, 3, 4, 0.5, -1} as sqr/mul/sqrt/reciprocal."""
    value = const_value(c)
    if value.size != 1 or not absorbed(c, x):
        return None
    k = value.item()
    xb = as_dtype_of(x, n)
    if k == 2:
        return mk("sqr", xb, at=n)
    if k == 3:
        return mk("mul", mk("sqr", xb, at=n), xb, at=n)
    if k == 4:
        return mk("sqr", mk("sqr", xb, at=n), at=n)
    if k == 0.5 and is_float(n):
        return mk("sqrt", xb, at=n)
    if k == -1 and is_float(n):
        return mk("reciprocal", xb, at=n)
    return None


def _reciprocal(n: Node, c: Node, x: Node) -> Node | None:
    if not (is_float(n) and absorbed(c, x)):
        return None
    return mk("reciprocal", as_dtype_of(x, n), at=n)


_x = P.var("x")

RULES = [
    # x**2 -> sqr(x), x**3 -> sqr(x)*x, x**4 -> sqr(sqr(x)), x**0.5 -> sqrt(x), x**-1 -> reciprocal(x)
    Rule("small_power", P("pow", _x, P.const(name="c"), name="n"), _small_power),
    # x*x -> sqr(x)
    Rule("mul_self", P("mul", _x, _x, name="n"), lambda n, x: mk("sqr", x, at=n)),
    # 1/x -> reciprocal(x)   (floats)
    Rule("reciprocal", P("true_div", P.const(1, name="c"), _x, name="n"), _reciprocal),
]
