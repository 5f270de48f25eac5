"""The optimization pipeline: an ordered list of ``graph -> graph`` passes.

``optimize(inputs, outputs)`` returns the optimized outputs and the log of rewrites applied, in order:

merge -> fold -> canonicalize -> merge -> stabilize -> specialize -> fuse -> merge

>>> from sympile.compiler.graph import input_node, make_node, constant_node
>>> x = input_node("float64", (None,), name="x")
>>> y = make_node("log", [make_node("add", [constant_node(1, weak=True), x])])
>>> [out], log = optimize([x], [y])
>>> out.op, [r.rule for r in log]
('log1p', ['log1p'])
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import GraphTypeError
from .fusion import fuse
from .graph import Node, toposort
from .rewrite import Rewrite, RuleSet, rebuild_fast, rewrite_graph
from .rules import canonicalize as _canonicalize
from .rules import fold as _fold
from .rules import shapes as _shapes
from .rules import specialize as _specialize
from .rules import stabilize as _stabilize


def merge(outputs: list[Node]) -> list[Node]:
    """Common subexpressions and equal constants become one node (structural hashing, bottom-up)."""
    canon: dict = {}
    memo: dict[int, Node] = {}
    for node in toposort(outputs):
        inputs = [memo[id(i)] for i in node.inputs]
        new = node if all(a is b for a, b in zip(inputs, node.inputs)) else rebuild_fast(node, inputs)
        key = new.structural_key() if new.op != "constant" else ("constant", new.attrs["value"], new.attrs["weak"])
        memo[id(node)] = canon.setdefault(key, new)
    return [memo[id(o)] for o in outputs]


FOLD = RuleSet(_fold.RULES)
CANONICALIZE = RuleSet(_fold.RULES + _shapes.RULES + _canonicalize.RULES)
STABILIZE = RuleSet(_stabilize.RULES + _canonicalize.RULES + _shapes.RULES + _fold.RULES)
SPECIALIZE = RuleSet(_specialize.RULES + _fold.RULES)

# A pass takes the output nodes and the rewrite log, and returns new output nodes.
Pass = Callable[[list[Node], list[Rewrite]], list[Node]]


def _rules_pass(name: str, rules: RuleSet) -> Pass:
    def run(outputs: list[Node], log: list[Rewrite]) -> list[Node]:
        return rewrite_graph(outputs, rules, log)

    run.__name__ = name
    return run


PASSES: list[tuple[str, Pass]] = [
    ("merge", lambda outputs, log: merge(outputs)),
    ("fold", _rules_pass("fold", FOLD)),
    ("canonicalize", _rules_pass("canonicalize", CANONICALIZE)),
    ("merge", lambda outputs, log: merge(outputs)),
    ("stabilize", _rules_pass("stabilize", STABILIZE)),
    ("specialize", _rules_pass("specialize", SPECIALIZE)),
    ("fuse", fuse),
    ("merge", lambda outputs, log: merge(outputs)),
]


def optimize(
    inputs: list[Node],
    outputs: list[Node],
    enabled: bool = True,
    on_pass: Callable[[str, list[Node]], None] | None = None,
) -> tuple[list[Node], list[Rewrite]]:
    """Run the default passes over ``outputs``; returns ``(new outputs, rewrites applied)``.

    ``on_pass(name, outputs)`` is called with the input graph (``"input"``) and after every pass, e.g. to
    write each stage as DOT. A pass that changed an output's dtype or rank is an internal error.
    """
    outputs = list(outputs)
    if on_pass is not None:
        on_pass("input", outputs)
    if not enabled:
        return outputs, []
    log: list[Rewrite] = []
    for name, pass_ in PASSES:
        new = pass_(outputs, log)
        for old, out in zip(outputs, new):
            if old.dtype != out.dtype or old.ndim != out.ndim:
                raise GraphTypeError(f"internal: pass {name!r} changed {old.describe()} into {out.describe()}")
        outputs = new
        if on_pass is not None:
            on_pass(name, outputs)
    return outputs, log
