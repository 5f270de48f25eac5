"""Algebraic simplifications that never change results (up to floating-point rounding).

Rewrites that are wrong for nan or inf (x/x -> 1, x*0 -> 0, x-x -> 0 for floats) are deliberately absent.
An identity such as x*1 -> x only applies when the other operand neither enlarges x's shape by broadcasting nor
changes its dtype by promotion.
"""

from __future__ import annotations

import numpy as np

from ..graph import Node, const_value
from ..optable import OPS
from ..rewrite import P, Rule, constant_like
from .blocks import absorbed, as_dtype_of, mk, same_type


def _identity(n: Node, x: Node, c: Node) -> Node | None:
    """x op c -> x when c is the op's identity element and leaves x's shape and dtype alone."""
    return x if absorbed(c, x) and same_type(n, x) else None


def _signed_zero_identity(negative: bool):
    """x+0 -> x (``negative=True``) and x-0 -> x for a zero that keeps float x's sign of zero: (-0.0)+(+0.0) is
    +0.0 and (-0.0)-(-0.0) is +0.0, so for floats only x+(-0.0) and x-(+0.0) are x itself."""

    def rewrite(n: Node, x: Node, c: Node) -> Node | None:
        if np.dtype(n.dtype).kind == "f" and not np.all(np.signbit(const_value(c)) == negative):
            return None
        return _identity(n, x, c)

    return rewrite


def _compose_dimshuffle(n: Node, inner: Node, x: Node) -> Node:
    first, second = inner.attrs["new_order"], n.attrs["new_order"]
    order = tuple("x" if d == "x" else first[d] for d in second)
    if order == tuple(range(x.ndim)):
        return x
    return mk("dimshuffle", x, at=n, new_order=order)


def _drop_identity_dimshuffle(n: Node, x: Node) -> Node | None:
    return x if n.attrs["new_order"] == tuple(range(x.ndim)) else None


def _reshape_noop(n: Node, x: Node, s: Node) -> Node | None:
    value = const_value(s)
    if value is None or None in x.shape or tuple(int(v) for v in value) != x.shape:
        return None
    return x


def _lift_dimshuffle(n: Node, e: Node) -> Node | None:
    """dimshuffle(f(a, b)) -> f(dimshuffle(a'), dimshuffle(b')), each input first aligned to f's rank."""
    order = n.attrs["new_order"]
    inputs = []
    for a in e.inputs:
        pad = e.ndim - a.ndim  # broadcasting adds ``pad`` leading axes to a
        sub = tuple("x" if d == "x" or d < pad else d - pad for d in order)
        core = sub[next((k for k, d in enumerate(sub) if d != "x"), len(sub)) :]
        if core == tuple(range(a.ndim)):
            inputs.append(a)  # only new leading axes: broadcasting adds them anyway (scalars stay as they are)
        else:
            inputs.append(mk("dimshuffle", a, at=n, new_order=sub))
    return mk(e.op, *inputs, at=e, **e.attrs)


def _elemwise(node: Node) -> bool:
    return node.op in OPS and OPS[node.op].kind == "elemwise"


def _sum_of_alloc(n: Node, a: Node) -> Node | None:
    """sum(alloc(v, *dims)) of a scalar v: v times the number of summed elements (an alloc of the rest)."""
    v, dims = a.inputs[0], a.inputs[1:]
    if v.ndim != 0:
        return None
    axes = n.attrs["axis"]
    axes = tuple(range(len(dims))) if axes is None else axes
    count = None
    for k in axes:
        d = mk("cast", dims[k], at=n, dtype=n.dtype)
        count = d if count is None else mk("mul", count, d, at=n)
    total = as_dtype_of(v, n) if count is None else mk("mul", as_dtype_of(v, n), count, at=n)
    if n.attrs["keepdims"]:
        one = constant_like(1, "int64", n.source)
        rest = [one if k in axes else d for k, d in enumerate(dims)]
    else:
        rest = [d for k, d in enumerate(dims) if k not in axes]
    return mk("alloc", total, *rest, at=n) if rest else total


def _sub_neg(n: Node, a: Node, b: Node) -> Node | None:
    inner = mk("add", a, b, at=n)
    return mk("neg", inner, at=n) if inner.dtype == n.dtype else None


def _log_exp(n: Node, x: Node) -> Node | None:
    return x if same_type(n, x) else None


_x = P.var("x")

RULES = [
    # x*1 -> x
    Rule("mul_one", P("mul", _x, P.const(1, name="c"), name="n"), _identity),
    # x/1 -> x
    Rule("div_one", P("true_div", _x, P.const(1, name="c"), name="n"), _identity),
    # x+0 -> x   (for floats only x+(-0.0): -0.0+0.0 is +0.0)
    Rule("add_zero", P("add", _x, P.const(0, name="c"), name="n"), _signed_zero_identity(negative=True)),
    # x-0 -> x   (for floats only x-(+0.0))
    Rule("sub_zero", P("sub", _x, P.const(0, name="c"), name="n"), _signed_zero_identity(negative=False)),
    # x**1 -> x
    Rule("pow_one", P("pow", _x, P.const(1, name="c"), name="n"), _identity),
    # zero_grad(x) -> x, disconnected_grad(x) -> x   (identities once gradients are built)
    Rule("gradient_marker", P(("zero_grad", "disconnected_grad"), _x), lambda x: x),
    # -(-x) -> x
    Rule("neg_neg", P("neg", P("neg", _x)), lambda x: x),
    # (-a)-b -> -(a+b)   (exact in IEEE arithmetic; exposes exp(-x-b) as exp(-(x+b)) to the sigmoid rule)
    Rule("sub_neg", P("sub", P("neg", P.var("a")), P.var("b"), name="n"), _sub_neg),
    # dimshuffle(dimshuffle(x)) -> dimshuffle(x)   (or x when the two cancel: x.T.T -> x)
    Rule(
        "dimshuffle_dimshuffle",
        P("dimshuffle", P("dimshuffle", _x, name="inner"), name="n"),
        _compose_dimshuffle,
    ),
    # dimshuffle(x, 0, 1, ..., ndim-1) -> x
    Rule("dimshuffle_identity", P("dimshuffle", _x, name="n"), _drop_identity_dimshuffle),
    # reshape(reshape(x, s1), s2) -> reshape(x, s2)
    Rule(
        "reshape_reshape",
        P("reshape", P("reshape", _x, P.var("s1")), P.var("s2"), name="n"),
        lambda n, x, s1, s2: mk("reshape", x, s2, at=n),
    ),
    # reshape(x, x's static shape) -> x
    Rule("reshape_noop", P("reshape", _x, P.var("s"), name="n"), _reshape_noop),
    # log(exp(x)) -> x
    Rule("log_exp", P("log", P("exp", _x), name="n"), _log_exp),
    # sum(alloc(v, d0, d1)) -> v*d0*d1   (sum over some axes: alloc of the rest)
    Rule("sum_of_alloc", P("sum", P("alloc", name="a"), name="n"), _sum_of_alloc),
    # dimshuffle(f(a, b)) -> f(dimshuffle(a), dimshuffle(b))   for elementwise f used once
    Rule(
        "lift_dimshuffle",
        P("dimshuffle", P(None, name="e", where=_elemwise, single_use=True), name="n"),
        _lift_dimshuffle,
    ),
]
