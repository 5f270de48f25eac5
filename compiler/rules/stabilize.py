"""Numerically stable forms: the same values where the naive form is finite, finite where it overflows.

Sigmoid rewrites compute in the sigmoid's float dtype (an integer x is cast first, so -x cannot wrap around).
"""

from __future__ import annotations

from ..graph import Node
from ..rewrite import P, Rule
from .blocks import absorbed, as_dtype_of, mk


def _log1p(n: Node, a: Node, c: Node, x: Node) -> Node | None:
    return mk("log1p", as_dtype_of(x, a), at=n) if absorbed(c, x) else None


def _expm1(n: Node, e: Node, c: Node, x: Node) -> Node | None:
    return mk("expm1", x, at=n) if absorbed(c, e) and n.dtype == e.dtype else None


def _logsumexp(n: Node, s: Node, x: Node) -> Node:
    return mk("logsumexp", x, at=n, axis=s.attrs["axis"], keepdims=s.attrs["keepdims"])


def _softmax_axis(x: Node, s: Node, d: Node | None) -> int | None:
    """The axis a denominator ``sum(exp(x))`` (maybe dimshuffled ``d``) normalizes along, if it lines up with x.

    Each dimension of the denominator, aligned right as broadcasting does, must be x's own axis, except the
    summed axis, which must be a broadcast 1: then ``exp(x) / denominator`` is a softmax along it.
    """
    axes = s.attrs["axis"]
    axes = tuple(range(x.ndim)) if axes is None else axes
    if len(axes) != 1:
        return None
    labels = (
        [("r" if i in axes else i) for i in range(x.ndim)]
        if s.attrs["keepdims"]
        else [i for i in range(x.ndim) if i not in axes]
    )
    if d is not None:
        labels = ["r" if o == "x" else labels[o] for o in d.attrs["new_order"]]
    if len(labels) > x.ndim:
        return None
    labels = ["r"] * (x.ndim - len(labels)) + labels
    wanted = ["r" if i in axes else i for i in range(x.ndim)]
    return axes[0] if labels == wanted else None


def _softmax(n: Node, e: Node, s: Node, x: Node, d: Node | None = None) -> Node | None:
    axis = _softmax_axis(x, s, d)
    return None if axis is None else mk("softmax", x, at=n, axis=axis)


def _log_softmax_getitem(n: Node, g: Node, s: Node, x: Node) -> Node:
    inner = mk("log_softmax", x, at=n, axis=s.attrs["axis"])
    return mk("getitem", inner, *g.inputs[1:], at=n, index=g.attrs["index"])


def _softplus_of(x: Node, sig: Node, n: Node, negate_input: bool) -> Node:
    xf = as_dtype_of(x, sig)
    return mk("softplus", mk("neg", xf, at=n) if negate_input else xf, at=n)


def _log_sigmoid(n: Node, sig: Node, x: Node) -> Node:
    return mk("neg", _softplus_of(x, sig, n, negate_input=True), at=n)


def _log_one_minus_sigmoid(n: Node, d: Node, c: Node, sig: Node, x: Node) -> Node | None:
    if not absorbed(c, sig) or d.dtype != sig.dtype:
        return None
    return mk("neg", _softplus_of(x, sig, n, negate_input=False), at=n)


def _sigmoid(n: Node, a: Node, c1: Node, c2: Node, x: Node) -> Node | None:
    if not (absorbed(c1, a) and absorbed(c2, x)):
        return None
    return mk("sigmoid", x, at=n)


_x = P.var("x")
_exp_x = P("exp", _x, name="e")
_sum_exp_x = P("sum", P("exp", _x), name="s")
_sigmoid_x = P("sigmoid", _x, name="sig")

RULES = [
    # log(1+x) -> log1p(x)
    Rule("log1p", P("log", P("add", P.const(1, name="c"), _x, name="a"), name="n"), _log1p),
    # log1p(exp(x)) -> softplus(x)   (log(1+exp(x)) arrives here through the rule above)
    Rule("softplus", P("log1p", P("exp", _x), name="n"), lambda n, x: mk("softplus", x, at=n)),
    # exp(x)-1 -> expm1(x)
    Rule("expm1", P("sub", _exp_x, P.const(1, name="c"), name="n"), _expm1),
    # exp(x)+(-1) -> expm1(x)
    Rule("expm1_add", P("add", _exp_x, P.const(-1, name="c"), name="n"), _expm1),
    # log(sum(exp(x))) -> logsumexp(x)
    Rule("logsumexp", P("log", _sum_exp_x, name="n"), _logsumexp),
    # exp(x)/sum(exp(x), axis=k, keepdims=True) -> softmax(x, axis=k)
    Rule("softmax", P("true_div", _exp_x, _sum_exp_x, name="n"), _softmax),
    # exp(x)/sum(exp(x), axis=k).dimshuffle(...) -> softmax(x, axis=k)
    Rule("softmax_dimshuffle", P("true_div", _exp_x, P("dimshuffle", _sum_exp_x, name="d"), name="n"), _softmax),
    # log(softmax(x)) -> log_softmax(x)
    Rule(
        "log_softmax",
        P("log", P("softmax", _x, name="s"), name="n"),
        lambda n, s, x: mk("log_softmax", x, at=n, axis=s.attrs["axis"]),
    ),
    # log(softmax(x)[i, y]) -> log_softmax(x)[i, y]   (the cross-entropy of a softmax)
    Rule(
        "log_softmax_getitem",
        P("log", P("getitem", P("softmax", _x, name="s"), name="g", prefix=True), name="n"),
        _log_softmax_getitem,
    ),
    # log(sigmoid(x)) -> -softplus(-x)   (so -log(sigmoid(x)) -> softplus(-x) after neg_neg)
    Rule("log_sigmoid", P("log", _sigmoid_x, name="n"), _log_sigmoid),
    # log(1-sigmoid(x)) -> -softplus(x)
    Rule(
        "log_one_minus_sigmoid",
        P("log", P("sub", P.const(1, name="c"), _sigmoid_x, name="d"), name="n"),
        _log_one_minus_sigmoid,
    ),
    # 1/(1+exp(-x)) -> sigmoid(x)
    Rule(
        "sigmoid",
        P(
            "true_div",
            P.const(1, name="c1"),
            P("add", P.const(1, name="c2"), P("exp", P("neg", _x)), name="a"),
            name="n",
        ),
        _sigmoid,
    ),
]
