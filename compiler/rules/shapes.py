"""Shapes in terms of the inputs' shapes, so that a graph (a gradient graph above all) does not keep a big
intermediate result alive only to read its dimensions, and ``sum_to`` nodes that provably sum nothing vanish.

Each dimension of a node is described by a *term*: an ``int`` (static), :class:`Dim` (``x.shape[k]`` of a node
whose dimension cannot be traced further, typically an input), :class:`Scalar` (an opaque integer scalar node)
or :class:`Bcast` (the broadcast of several dimensions, as elementwise ops combine them). Terms are canonical
enough to compare: ``Bcast`` is a set, so ``shape(a*b)`` and ``shape(b+a)`` give equal terms.

>>> from sympile.compiler.graph import input_node, make_node
>>> x = input_node("float64", (None, None), name="x")
>>> v = input_node("float64", (None,), name="v")
>>> dim_term(make_node("exp", [make_node("add", [x, v])]), 0) == Dim(x, 0)
True
"""

from __future__ import annotations

from dataclasses import dataclass

from ..graph import Node, const_value
from ..ops.inference import static_int
from ..optable import OPS
from ..rewrite import P, Rule, constant_like
from .blocks import mk

#: how deep :func:`dim_term` follows a chain of nodes before it treats a dimension as opaque
MAX_DEPTH = 64

_SAME_SHAPE = frozenset({"softmax", "log_softmax", "setitem", "zero_grad", "disconnected_grad"})
_AXIS_REDUCTIONS = frozenset({"sum", "prod", "mean", "max", "min", "all", "any", "var", "std", "logsumexp"})


@dataclass(frozen=True, eq=False)
class Dim:
    """``node.shape[k]`` of a node traced no further (equal only to itself: nodes compare by identity)."""

    node: Node
    k: int

    def __eq__(self, other):
        return isinstance(other, Dim) and other.node is self.node and other.k == self.k

    def __hash__(self):
        return hash((id(self.node), self.k))


@dataclass(frozen=True, eq=False)
class Scalar:
    """An integer scalar node that is not a shape entry (e.g. an ``alloc`` dimension the user computed)."""

    node: Node

    def __eq__(self, other):
        return isinstance(other, Scalar) and other.node is self.node

    def __hash__(self):
        return id(self.node)


@dataclass(frozen=True, eq=False)
class Bcast:
    """The broadcast of two or more dimensions: ``items`` in first-seen order (so built graphs are
    deterministic), compared as a set."""

    items: tuple

    def __eq__(self, other):
        return isinstance(other, Bcast) and frozenset(other.items) == frozenset(self.items)

    def __hash__(self):
        return hash(frozenset(self.items))


def bcast(terms) -> object:
    """The term of dimensions broadcast together: 1s drop out, a static size other than 1 wins (a valid
    program has all others equal to it or 1), equal terms count once."""
    items: list = []
    for t in terms:
        for u in t.items if isinstance(t, Bcast) else (t,):
            if isinstance(u, int) and u != 1:
                return u
            if u != 1 and u not in items:
                items.append(u)
    if not items:
        return 1
    return items[0] if len(items) == 1 else Bcast(tuple(items))


def dim_term(x: Node, k: int, depth: int = 0):
    """The term of ``x.shape[k]``, traced down through ops whose output dimensions come from their inputs'."""
    k %= max(x.ndim, 1)
    if x.shape[k] is not None:
        return x.shape[k]
    if depth > MAX_DEPTH or x.is_leaf:
        return Dim(x, k)
    op, inputs, d = x.op, x.inputs, depth + 1
    if op == "fused" or OPS[op].kind == "elemwise":
        return bcast(dim_term(i, k - (x.ndim - i.ndim), d) for i in inputs if k - (x.ndim - i.ndim) >= 0)
    if op in _SAME_SHAPE:
        return dim_term(inputs[0], k, d)
    if op == "dimshuffle":
        src = x.attrs["new_order"][k]
        return 1 if src == "x" else dim_term(inputs[0], src, d)
    if op in _AXIS_REDUCTIONS:
        axes = x.attrs["axis"]
        axes = range(inputs[0].ndim) if axes is None else axes
        if x.attrs["keepdims"]:
            return 1 if k in axes else dim_term(inputs[0], k, d)
        kept = [i for i in range(inputs[0].ndim) if i not in axes]
        return dim_term(inputs[0], kept[k], d)
    if op in ("sum_to", "reshape"):
        term = entry_term(inputs[1], k, d)
        # an opaque entry of a reshape target may be -1 at run time: then it is not the dimension
        return Dim(x, k) if term is None or (op == "reshape" and isinstance(term, Scalar)) else term
    if op == "alloc":
        return scalar_term(inputs[1 + k], d)
    if op == "getitem":
        arrays = _advanced_only(x)
        if arrays is not None:  # x[i, j] with integer arrays for every axis: the arrays' broadcast shape
            return bcast(dim_term(a, k - (x.ndim - a.ndim), d) for a in arrays if k - (x.ndim - a.ndim) >= 0)
    if op == "arange" and static_int(inputs[0]) == 0 and static_int(inputs[2]) == 1:
        stop = scalar_term(inputs[1], d)
        return Dim(x, k) if isinstance(stop, Scalar) else stop  # a dimension is never negative: len = stop
    if op in ("dot", "tensordot"):
        source = _contraction_dims(x)
        if source is not None:
            node, axis = source[k]
            return dim_term(node, axis, d)
    return Dim(x, k)


def _advanced_only(x: Node) -> list | None:
    """The index arrays of ``x[i, j, ...]`` when every axis is indexed by an integer array, else ``None``."""
    index = x.attrs["index"]
    if len(index) != x.inputs[0].ndim or any(e[0] != "array" or not isinstance(e[1], tuple) for e in index):
        return None
    arrays = [x.inputs[1 + e[1][1]] for e in index]
    return arrays if all(a.type.np_dtype.kind in "iu" for a in arrays) else None


def _contraction_dims(x: Node) -> list | None:
    """For each output axis of ``dot``/``tensordot``, the (operand, axis) it comes from."""
    a, b = x.inputs
    if x.op == "tensordot":
        xa, xb = x.attrs["axes"]
        return [(a, i) for i in range(a.ndim) if i not in xa] + [(b, j) for j in range(b.ndim) if j not in xb]
    if a.ndim == 0 or b.ndim == 0:
        return None  # a scaling: the shape is the other operand's, possibly broadcast (rare: leave it)
    rest_b = [(b, j) for j in range(b.ndim - 2)] + [(b, b.ndim - 1)] if b.ndim >= 2 else []
    return [(a, i) for i in range(a.ndim - 1)] + rest_b


def scalar_term(s: Node, depth: int = 0):
    """The term of an integer scalar node used as a dimension."""
    value = static_int(s)
    if value is not None:
        return value
    if s.op == "getitem" and s.inputs[0].op == "shape" and len(s.attrs["index"]) == 1:
        (entry,) = s.attrs["index"]
        if entry[0] == "int" and isinstance(entry[1], int):
            return dim_term(s.inputs[0].inputs[0], entry[1], depth + 1)
    if s.op == "cast" and s.inputs[0].type.np_dtype.kind in "iu":
        return scalar_term(s.inputs[0], depth + 1)
    if _is_bcast_node(s):  # where(eq(a, 1), b, a): what build_term makes of a broadcast
        cond, b, a = s.inputs
        terms = [scalar_term(a, depth + 1), scalar_term(b, depth + 1)]
        if not any(isinstance(t, Scalar) for t in terms):  # only sizes broadcast; other integers are opaque
            return bcast(terms)
    return Scalar(s)


def _is_bcast_node(s: Node) -> bool:
    if s.op != "where" or s.inputs[0].op != "eq":
        return False
    a, one = s.inputs[0].inputs
    return a is s.inputs[2] and static_int(one) == 1


def entry_term(vec: Node, k: int, depth: int = 0):
    """The term of entry ``k`` of a shape vector (``shape(y)``, a constant, a ``stack`` of scalars), or ``None``."""
    value = const_value(vec)
    if value is not None:
        v = int(value[k])
        return None if v < 0 else v  # -1 in a reshape target is not a dimension
    if vec.op == "shape":
        return dim_term(vec.inputs[0], k, depth + 1)
    if vec.op == "stack" and vec.attrs.get("axis") == 0:
        term = scalar_term(vec.inputs[k], depth + 1)
        return None if isinstance(term, int) and term < 0 else term
    return None


def build_term(term, at: Node) -> Node:
    """An int64 scalar node computing ``term``; a broadcast of a and b is ``where(a == 1, b, a)``."""
    if isinstance(term, int):
        return constant_like(term, "int64", at.source)
    if isinstance(term, Dim):
        return mk("getitem", mk("shape", term.node, at=at), at=at, index=(("int", term.k),))
    if isinstance(term, Scalar):
        node = term.node
        return node if node.dtype == "int64" else mk("cast", node, at=at, dtype="int64")
    out = build_term(term.items[0], at)
    for item in term.items[1:]:
        out = mk("where", mk("eq", out, constant_like(1, "int64", at.source), at=at), build_term(item, at), out, at=at)
    return out


def _refers_to(term, x: Node) -> bool:
    if isinstance(term, Dim):
        return term.node is x
    if isinstance(term, Bcast):
        return any(_refers_to(t, x) for t in term.items)
    return False


def _shape_entry(n: Node, x: Node) -> Node | None:
    index = n.attrs["index"]
    if len(index) != 1 or index[0][0] != "int" or not isinstance(index[0][1], int) or x.is_leaf:
        return None
    term = dim_term(x, index[0][1])
    return None if term == Dim(x, index[0][1] % x.ndim) else build_term(term, n)


def _shape_of_computed(n: Node, x: Node) -> Node | None:
    if x.is_leaf or x.ndim == 0:
        return None
    terms = [dim_term(x, k) for k in range(x.ndim)]
    if any(_refers_to(t, x) for t in terms):
        return None  # still needs x itself: nothing gained
    return mk("stack", *(build_term(t, n) for t in terms), at=n, axis=0)


def _getitem_stack(n: Node, s: Node) -> Node | None:
    index = n.attrs["index"]
    if s.attrs.get("axis") != 0 or len(index) != 1 or index[0][0] != "int" or not isinstance(index[0][1], int):
        return None
    k = index[0][1]
    return s.inputs[k] if -len(s.inputs) <= k < len(s.inputs) else None


def _sum_to_noop(n: Node, g: Node, s: Node) -> Node | None:
    """sum_to(g, s) -> g when s has g's rank and every entry provably equals g's dimension."""
    if s.shape[0] != g.ndim:
        return None
    for k in range(g.ndim):
        target = entry_term(s, k)
        if target is None or target != dim_term(g, k):
            return None
    return g


def _with_alloc(node: Node) -> bool:
    return (node.op in OPS and OPS[node.op].kind == "elemwise" and len(node.inputs) > 1
            and any(i.op == "alloc" for i in node.inputs))  # fmt: skip


def _covered(alloc: Node, n: Node, others: list) -> bool:
    """Whether ``others`` (the elementwise node's other operands) alone give every axis of ``alloc`` its size."""
    for k, dim in enumerate(alloc.inputs[1:]):
        axis = k + n.ndim - alloc.ndim
        term = scalar_term(dim)
        owners = [o for o in others if axis - (n.ndim - o.ndim) >= 0]
        if not owners:
            return False
        if term != 1 and not any(dim_term(o, axis - (n.ndim - o.ndim)) == term for o in owners):
            return False
    return True


def _alloc_operand(n: Node) -> Node | None:
    """f(alloc(v, *dims), y) -> f(v, y) when y provably has dims: broadcasting v does what the alloc did."""
    for i, a in enumerate(n.inputs):
        others = [o for j, o in enumerate(n.inputs) if j != i]
        if a.op == "alloc" and _covered(a, n, others):
            inputs = list(n.inputs)
            inputs[i] = a.inputs[0]
            return mk(n.op, *inputs, at=n, **n.attrs)
    return None


def _unary_of_alloc(n: Node, a: Node) -> Node | None:
    """f(alloc(v, *dims)) -> alloc(f(v), *dims): f runs on v alone instead of on every copy of it."""
    if not (n.op in OPS and OPS[n.op].kind == "elemwise" and len(n.inputs) == 1):
        return None
    return mk("alloc", mk(n.op, a.inputs[0], at=n, **n.attrs), *a.inputs[1:], at=n)


def _one_int_entry(node: Node) -> bool:
    index = node.attrs["index"]
    return len(index) == 1 and index[0][0] == "int"


RULES = [
    # shape(f(a, b)) -> stack(dims of a and b)   (e.g. shape(exp(x) + v) -> stack(x.shape[0], x.shape[1]))
    Rule("shape_of_computed", P("shape", P.var("x"), name="n"), _shape_of_computed),
    # shape(f(a, b))[k] -> a.shape[k], b.shape[k] or their broadcast   (when the whole vector cannot be traced)
    Rule("shape_entry", P("getitem", P("shape", P.var("x")), name="n", where=_one_int_entry), _shape_entry),
    # stack(d0, d1, d2)[k] -> dk
    Rule("getitem_stack", P("getitem", P("stack", name="s"), name="n", where=_one_int_entry), _getitem_stack),
    # alloc(v, y.shape[0], y.shape[1]) * y -> v * y   (the other operand gives the shape anyway)
    Rule("alloc_operand", P(None, name="n", where=_with_alloc), _alloc_operand),
    # neg(alloc(v, d0, d1)) -> alloc(neg(v), d0, d1)   (any unary elementwise op)
    Rule("unary_of_alloc", P(None, P("alloc", name="a", single_use=True), name="n"), _unary_of_alloc),
    # sum_to(g, s) -> g   when s provably is g's shape (nothing was broadcast)
    Rule("sum_to_noop", P("sum_to", P.var("g"), P.var("s"), name="n"), _sum_to_noop),
]

__all__ = ["RULES", "Bcast", "Dim", "Scalar", "bcast", "build_term", "dim_term", "entry_term", "scalar_term"]
