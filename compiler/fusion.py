"""Elementwise fusion: maximal elementwise subgraphs become one ``fused`` node; a reduction absorbs its
elementwise producers into one ``fused_reduce`` node.

Groups grow from a root (visited from the outputs down) toward the inputs. A node joins a group only when all
of its consumers are already in it and it is not a graph output, so no work is ever duplicated: a value used
outside the group stays a boundary (computed once, an input of the fused node). Because only the root has
consumers outside the group, fusing can never create a cycle. Scalar constants are inlined in the Composite.

>>> from sympile.compiler.graph import input_node, make_node
>>> x = input_node("float64", (None,), name="x")
>>> y = make_node("sum", [make_node("mul", [make_node("exp", [x]), x])], axis=None)
>>> [out] = fuse([y])
>>> out.op, out.attrs["inner"].describe()
('fused_reduce', 'exp(i0)*i0')
"""

from __future__ import annotations

import heapq

from .errors import GraphTypeError, GraphValueError
from .graph import Node, make_node, toposort
from .ops.fused import FUSIBLE_REDUCTIONS, Composite
from .optable import OPS
from .rewrite import Rewrite, rebuild_fast

#: a group with fewer elementwise nodes than this stays unfused (a lone op is already one loop)
MIN_FUSED = 2


def _elemwise(node: Node) -> bool:
    opdef = OPS.get(node.op)
    return opdef is not None and opdef.kind == "elemwise"


def _scalar_constant(node: Node) -> bool:
    return node.op == "constant" and node.ndim == 0


def fuse(outputs: list[Node], log: list | None = None) -> list[Node]:
    """Replace elementwise groups in the graph of ``outputs`` by fused nodes; returns the new outputs."""
    order = toposort(outputs)
    position = {id(n): k for k, n in enumerate(order)}
    consumers: dict[int, set[int]] = {}
    for node in order:
        for i in node.inputs:
            consumers.setdefault(id(i), set()).add(id(node))
    is_output = {id(o) for o in outputs}
    member_of: dict[int, int] = {}  # id(node) -> id(root) of its group
    groups: dict[int, list[Node]] = {}  # id(root) -> members in topological order (root excluded if reduce)

    for node in reversed(order):
        if id(node) in member_of:
            continue
        if _elemwise(node):
            seeds, members = [node], [node]
        elif node.op in FUSIBLE_REDUCTIONS and _absorbable(node.inputs[0], {id(node)}, consumers, is_output):
            seeds, members = [node.inputs[0]], [node.inputs[0]]
        else:
            continue
        inside = {id(node)} | {id(m) for m in members}
        _grow(seeds, members, inside, order, position, consumers, is_output, member_of)
        if len(members) + (0 if _elemwise(node) else 1) < MIN_FUSED:
            continue
        for m in members:
            member_of[id(m)] = id(node)
        member_of[id(node)] = id(node)
        members.sort(key=lambda m: position[id(m)])
        groups[id(node)] = members

    if not groups:
        return list(outputs)
    memo: dict[int, Node] = {}
    for node in order:
        root_id = member_of.get(id(node))
        if root_id is not None and root_id != id(node):
            continue  # computed inside its group's fused node
        if root_id is None:
            inputs = [memo[id(i)] for i in node.inputs]
            same = all(a is b for a, b in zip(inputs, node.inputs))
            memo[id(node)] = node if same else rebuild_fast(node, inputs)
            continue
        fused = _build(node, groups[id(node)], memo)
        if fused is None:  # could not be typed as one node: keep the group unfused
            for m in groups[id(node)] + [node]:
                if id(m) not in memo:
                    inputs = [memo[id(i)] for i in m.inputs]
                    memo[id(m)] = rebuild_fast(m, inputs)
            continue
        if log is not None:
            log.append(Rewrite("fuse", node, fused, node.source))
        memo[id(node)] = fused
    return [memo[id(o)] for o in outputs]


def _absorbable(node: Node, inside: set, consumers, is_output) -> bool:
    return _elemwise(node) and id(node) not in is_output and consumers.get(id(node), set()) <= inside


def _grow(seeds, members, inside, order, position, consumers, is_output, member_of) -> None:
    """Add producers to the group, visiting them from the latest in topological order back to the earliest."""
    heap: list = []
    queued: set = set()

    def push_inputs(node: Node):
        for i in node.inputs:
            if id(i) not in queued and id(i) not in inside:
                queued.add(id(i))
                heapq.heappush(heap, -position[id(i)])

    for s in seeds:
        push_inputs(s)
    while heap:
        node = order[-heapq.heappop(heap)]
        # every consumer of ``node`` comes later in the order, so each was already decided
        if id(node) in member_of or not _absorbable(node, inside, consumers, is_output):
            continue
        members.append(node)
        inside.add(id(node))
        push_inputs(node)


def _build(root: Node, members: list[Node], memo: dict) -> Node | None:
    """The fused node for a group: a Composite over the group's outside inputs (memo: their new nodes)."""
    reduce_root = not _elemwise(root)  # an elementwise root is the last member; a reduction is not a member
    elems = members
    in_group = {id(m) for m in elems}
    slot: dict[int, int] = {}
    inputs: list[Node] = []
    for m in elems:
        for i in m.inputs:
            if id(i) in slot or _scalar_constant(i) or id(i) in in_group:
                continue
            slot[id(i)] = len(inputs)
            inputs.append(i)
    n = len(inputs)
    steps, dtypes, sources = [], [i.dtype for i in inputs], []
    index = dict(slot)
    for m in elems:
        for i in m.inputs:
            if _scalar_constant(i) and id(i) not in index:
                attrs = (("value", i.attrs["value"]), ("weak", bool(i.attrs.get("weak"))))
                index[id(i)] = n + len(steps)
                steps.append(("constant", (), attrs))
                dtypes.append(i.dtype)
                sources.append(i.source)
        index[id(m)] = n + len(steps)
        steps.append((m.op, tuple(index[id(i)] for i in m.inputs), tuple(sorted(m.attrs.items()))))
        dtypes.append(m.dtype)
        sources.append(m.source)
    inner = Composite(n, tuple(steps), tuple(dtypes), tuple(sources))
    new_inputs = [memo[id(i)] for i in inputs]
    try:
        if reduce_root:
            attrs = {"reduce": root.op, "axis": root.attrs["axis"], "keepdims": root.attrs["keepdims"]}
            fused = make_node("fused_reduce", new_inputs, source=root.source, inner=inner, **attrs)
        else:
            fused = make_node("fused", new_inputs, source=root.source, inner=inner)
    except (GraphTypeError, GraphValueError, TypeError, ValueError):
        return None
    if fused.dtype != root.dtype or fused.ndim != root.ndim:
        return None
    fused.name = root.name
    return fused
