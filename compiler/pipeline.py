"""The optimization pipeline: an ordered list of ``graph -> graph`` passes.

``optimize(inputs, outputs)`` returns the optimized outputs and the log of rewrites applied.
"""

from __future__ import annotations

from .graph import Node, rebuild, toposort


def merge(outputs: list[Node]) -> list[Node]:
    """Common subexpressions and equal constants become one node (structural hashing, bottom-up)."""
    canon: dict = {}
    memo: dict[int, Node] = {}
    for node in toposort(outputs):
        inputs = [memo[id(i)] for i in node.inputs]
        new = node if all(a is b for a, b in zip(inputs, node.inputs)) else rebuild(node, inputs)
        key = new.structural_key() if new.op != "constant" else ("constant", new.attrs["value"], new.attrs["weak"])
        memo[id(node)] = canon.setdefault(key, new)
    return [memo[id(o)] for o in outputs]


PASSES = [merge]


def optimize(inputs: list[Node], outputs: list[Node], enabled: bool = True) -> tuple[list[Node], list]:
    """Run the default passes over ``outputs``; returns ``(new outputs, rewrites applied)``."""
    if not enabled:
        return list(outputs), []
    for pass_ in PASSES:
        outputs = pass_(outputs)
    return outputs, []
