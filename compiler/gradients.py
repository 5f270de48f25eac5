"""Reverse-mode differentiation over the node graph: toposort, walk backwards, accumulate cotangents.

Each op's rule lives in its op-table entry (``OpDef.grad``): ``rule(node, g) -> [gradient or None per input]``,
where ``g`` is the cotangent of ``node``'s output and ``None`` means "zero". Ops without a gradient say so with
``build.NO_GRAD`` (zero, inputs stay connected) or ``build.DISCONNECTED``; an op with no rule at all is an
error naming it and the user's line. The result is a graph like any other: it is optimized, compiled, and can
be differentiated again.

>>> from sympile.compiler.graph import input_node, make_node
>>> x = input_node("float64", ())
>>> [g] = grad_nodes(make_node("mul", [x, x]), [x])
>>> g.op
'add'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .build import DISCONNECTED, add, cast, zeros_like
from .errors import GraphTypeError
from .graph import Node, constant_node, toposort
from .optable import OPS


class MissingGradientError(GraphTypeError):
    """An op on the path from the cost to a variable has no gradient rule."""


def is_differentiable(node: Node) -> bool:
    """Only floating-point values carry gradients: integer and boolean ones get none."""
    return node.type.np_dtype.kind == "f"


def grad_nodes(
    cost: Node | None,
    wrt: Sequence[Node],
    known_grads: dict | None = None,
    consider_constant: Sequence[Node] | None = None,
) -> list:
    """The gradient of ``cost`` (a scalar node) with respect to each node of ``wrt``.

    ``known_grads`` maps nodes to cotangents added at the start (a cost may then be ``None``: that is the
    vector-Jacobian product, ``Lop``). Nodes in ``consider_constant`` are treated as constants: nothing flows
    through them. An entry of the result is ``None`` when that node is disconnected from the cost, and a
    zeros node when it is connected but its gradient is zero (e.g. through ``floor``). Gradients have their
    variable's dtype and shape.
    """
    seeds: list[tuple[Node, Node]] = []
    if cost is not None and not known_grads and all(n.is_leaf for n in [*wrt, *(consider_constant or ())]):
        cost = stable_form(cost)
    if cost is not None:
        seeds.append((cost, constant_node(np.ones((), dtype=cost.dtype))))
    for node, g in (known_grads or {}).items():
        if g.ndim != node.ndim:
            raise GraphTypeError(f"known gradient of rank {g.ndim} for {node.describe()} of rank {node.ndim}")
        seeds.append((node, g))
    order = toposort([n for n, _ in seeds])
    blocked = {id(n) for n in consider_constant or ()}
    relevant = _depends_on(order, wrt, blocked)

    pending: dict[int, list] = {}  # node -> cotangent contributions still to be added
    reached: set[int] = set()  # nodes on a path from the cost (zero cotangent included)
    for node, g in seeds:
        if id(node) in relevant:
            pending.setdefault(id(node), []).append(_fit(g, node, None))
            reached.add(id(node))
    totals: dict[int, Node | None] = {}

    def cotangent(node: Node) -> Node | None:
        if id(node) not in totals:
            parts = pending.pop(id(node), [])
            out = parts[0] if parts else None
            for part in parts[1:]:
                out = add(out, part)
            totals[id(node)] = out
        return totals[id(node)]

    for node in reversed(order):
        if id(node) not in reached or node.is_leaf or id(node) in blocked:
            continue
        inputs = [i for i in node.inputs if id(i) in relevant]
        if not inputs:
            continue  # a variable of wrt computed from no other one
        rule = OPS[node.op].grad
        if rule is None:
            raise MissingGradientError(
                f"op {node.op!r} has no gradient rule: cannot differentiate through {node.describe()}"
            )
        reached.update(id(i) for i in inputs)
        g = cotangent(node)
        if g is None:
            continue  # zero cotangent: the inputs are reached, their gradient is zero
        grads = rule(node, g)
        if len(grads) != len(node.inputs):
            raise GraphTypeError(f"internal: gradient rule of {node.op!r} returned {len(grads)} gradients")
        for inp, gi in zip(node.inputs, grads):
            if gi is None or id(inp) not in relevant or not is_differentiable(inp):
                continue
            pending.setdefault(id(inp), []).append(_fit(gi, inp, node))

    out = []
    for w in wrt:
        if id(w) not in reached:
            out.append(None)
            continue
        g = cotangent(w)
        out.append(zeros_like(w) if g is None else g)
    return out


def stable_form(cost: Node) -> Node:
    """``cost`` with the stabilizing rewrites applied before it is differentiated, so that the gradient is the
    derivative of the stable form (``log(sigmoid(z))`` -> ``-softplus(-z)`` differentiates to ``sigmoid(-z)``,
    finite everywhere, where the naive chain divides by a sigmoid that underflows to 0). The optimizer rewrites
    the forward graph the same way, so both share their nodes after merging.

    >>> from sympile.compiler.graph import input_node, make_node
    >>> z = input_node("float64", ())
    >>> stable_form(make_node("log", [make_node("sigmoid", [z])])).op
    'neg'
    """
    from .rewrite import rewrite_graph  # the rule modules import the op table, which imports this package's ops
    from .rules import canonicalize, stabilize

    rules = stabilize.RULES + [r for r in canonicalize.RULES if r.name in ("sub_neg", "neg_neg")]
    return rewrite_graph([cost], rules)[0]


def _depends_on(order: list, wrt: Sequence[Node], blocked: set) -> set:
    """ids of the nodes whose value depends on a node of ``wrt`` through differentiable connections."""
    relevant = {id(w) for w in wrt}
    for node in order:
        if id(node) in relevant or node.is_leaf or id(node) in blocked:
            continue
        if OPS[node.op].grad is DISCONNECTED:
            continue
        if any(id(i) in relevant for i in node.inputs):
            relevant.add(id(node))
    return relevant


def _fit(g: Node, var: Node, node: Node | None) -> Node:
    """``g`` checked against ``var``'s rank and cast to its dtype (gradients keep their variable's dtype)."""
    if g.ndim != var.ndim:
        where = f"gradient rule of {node.op!r}" if node is not None else "known gradient"
        raise GraphTypeError(
            f"internal: {where} gave rank {g.ndim} ({g.type.short()}) for {var.describe()} of rank {var.ndim}"
        )
    return cast(g, var.dtype)
