"""The rewrite engine: rules are data (a pattern and a pure callback), one engine applies them.

A :class:`Rule` pairs a pattern :class:`P` with a callback that receives the pattern's named bindings and
returns a replacement node, or ``None`` to decline. :func:`rewrite_graph` applies a rule set bottom-up to a
fixed point: each node is visited once (memoized by identity), after its inputs; a replacement is itself
rewritten before it takes the node's place. Every applied rule is logged as a :class:`Rewrite`.

>>> from sympile.compiler.graph import input_node, make_node, constant_node
>>> x = input_node("float64", (None,), name="x")
>>> rule = Rule("mul_one", P("mul", P.var("x"), P.const(1)), lambda x: x)
>>> log = []
>>> out = rewrite_graph([make_node("mul", [x, constant_node(1, weak=True)])], [rule], log)
>>> out[0] is x, log[0].before, log[0].after
(True, 'x*1', 'x')
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import GraphTypeError, GraphValueError
from .exprtext import ATOM, op_text
from .graph import ConstValue, Node, const_value, rebuild, toposort
from .types import TensorType

#: ops whose two inputs may be swapped when matching a pattern
COMMUTATIVE = frozenset({"add", "mul", "maximum", "minimum", "eq", "neq", "and_", "or_", "xor"})


class P:
    """A pattern over graph nodes.

    - ``P("exp", P.var("x"))``: an ``exp`` node whose input is bound to ``x``; ``P(("add", "sub"), ...)`` takes
      one of several ops; ``P("sum")`` with no sub-patterns matches any inputs.
    - ``attrs={...}`` requires those attribute values; ``where=pred`` a predicate on the node;
      ``name="s"`` binds the matched node; ``single_use=True`` requires the node to have one consumer;
      ``prefix=True`` matches the sub-patterns against the first inputs only (the rest are free).
    - Sub-patterns of commutative ops (add, mul, ...) match in either order.
    """

    __slots__ = ("ops", "children", "name", "attrs", "where", "single_use", "value", "prefix")

    def __init__(self, op=None, *children: P, name=None, attrs=None, where=None, single_use=False, prefix=False):
        self.ops = None if op is None else frozenset((op,) if isinstance(op, str) else op)
        self.children = children or None
        self.name = name
        self.attrs = attrs or {}
        self.where = where
        self.single_use = single_use
        self.value = None
        self.prefix = prefix

    @staticmethod
    def var(name: str, where: Callable[[Node], bool] | None = None) -> P:
        """Any node, bound to ``name`` (a name used twice must bind the same node)."""
        return P(None, name=name, where=where)

    @staticmethod
    def const(value=None, name: str | None = None) -> P:
        """A constant node; with ``value``, one whose elements all equal it (any dtype)."""
        pat = P("constant", name=name)
        pat.value = value
        return pat

    def names(self) -> set[str]:
        """The names this pattern binds."""
        out = {self.name} if self.name else set()
        for child in self.children or ():
            out |= child.names()
        return out

    def match(self, node: Node, uses: Callable[[Node], int], bound: dict) -> dict | None:
        """The bindings extended by a match of ``node``, or ``None``."""
        if self.ops is not None and node.op not in self.ops:
            return None
        if self.value is not None and not _all_equal(node, self.value):
            return None
        if any(node.attrs.get(k) != v for k, v in self.attrs.items()):
            return None
        if self.single_use and uses(node) != 1:
            return None
        if self.where is not None and not self.where(node):
            return None
        if self.name is not None:
            if self.name in bound:
                if bound[self.name] is not node:
                    return None
            else:
                bound = {**bound, self.name: node}
        if self.children is None:
            return bound
        if len(self.children) != len(node.inputs) and not (self.prefix and len(self.children) < len(node.inputs)):
            return None
        orders = [node.inputs]
        if node.op in COMMUTATIVE and len(node.inputs) == 2:
            orders.append(node.inputs[::-1])
        for inputs in orders:
            result = bound
            for pat, child in zip(self.children, inputs):
                result = pat.match(child, uses, result)
                if result is None:
                    break
            if result is not None:
                return result
        return None


def _all_equal(node: Node, value) -> bool:
    v = const_value(node)
    if v is None or v.size == 0:
        return False
    with np.errstate(all="ignore"):
        return bool(np.all(v == value))


@dataclass(frozen=True)
class Rule:
    """One rewrite: ``name``, a pattern, and ``callback(**bindings) -> Node | None``."""

    name: str
    pattern: P
    callback: Callable[..., Node | None]

    def __post_init__(self):
        names = sorted(self.pattern.names())
        try:  # a callback that cannot take the pattern's bindings is a bug in the rule table: say so at import
            inspect.signature(self.callback).bind(**dict.fromkeys(names))
        except TypeError as exc:
            raise TypeError(f"rule {self.name!r}: callback does not accept the bindings {names}: {exc}") from None


class Rewrite:
    """A record of one applied rewrite: the rule, the subgraph before and after as short text, the source line.

    The texts are rendered on first access (the optimizer itself never needs them).
    """

    __slots__ = ("rule", "source", "_before", "_after")

    def __init__(self, rule: str, before: Node | str, after: Node | str, source: str = ""):
        self.rule = rule
        self.source = source
        self._before = before
        self._after = after

    @property
    def before(self) -> str:
        if not isinstance(self._before, str):
            self._before = expr_text(self._before)
        return self._before

    @property
    def after(self) -> str:
        if not isinstance(self._after, str):
            self._after = expr_text(self._after)
        return self._after

    def __str__(self) -> str:
        return f"{self.rule}: {self.before}  ->  {self.after}"

    def __repr__(self) -> str:
        return f"Rewrite({self.rule!r}, {self.before!r}, {self.after!r})"


class RuleSet:
    """Rules indexed by the op of their pattern's root, so each node only tries the rules that can match it."""

    def __init__(self, rules: Iterable[Rule]):
        self.rules = list(rules)
        self.by_op: dict[str, list[Rule]] = {}
        self.any_op: list[Rule] = []
        self._for_op: dict[str, list[Rule]] = {}
        for rule in self.rules:
            if rule.pattern.ops is None:
                self.any_op.append(rule)
            for op in rule.pattern.ops or ():
                self.by_op.setdefault(op, []).append(rule)

    def __add__(self, other: RuleSet) -> RuleSet:
        return RuleSet(self.rules + other.rules)

    def for_op(self, op: str) -> list[Rule]:
        """The rules whose pattern can match a node of ``op``, in table order."""
        rules = self._for_op.get(op)
        if rules is None:
            rules = self._for_op[op] = [r for r in self.rules if r.pattern.ops is None or op in r.pattern.ops]
        return rules


def _weak(node: Node) -> bool:
    return node.op == "constant" and bool(node.attrs.get("weak"))


def rebuild_fast(node: Node, inputs: Sequence[Node]) -> Node:
    """``node`` over new ``inputs``; when they have the old inputs' types, the old type is kept without running
    type inference again (the inference of an op depends only on its input types, attrs and static values,
    and new static values can only make a type more precise, never wrong)."""
    if node.is_leaf:
        return node
    if all(a.type == b.type and _weak(a) == _weak(b) for a, b in zip(inputs, node.inputs)):
        return Node(node.op, tuple(inputs), node.attrs, node.type, node.source, node.name)
    return rebuild(node, inputs)


def fits(new: Node, old: Node) -> bool:
    """Whether ``new`` may replace ``old``: same dtype and rank, and no static dimension contradicted."""
    if new.dtype != old.dtype or new.ndim != old.ndim or (_weak(new) and not _weak(old)):
        return False  # a weak constant would change how consumers promote dtypes
    return all(a is None or b is None or a == b for a, b in zip(new.shape, old.shape))


def rewrite_graph(outputs: Sequence[Node], rules, log: list | None = None, max_steps: int | None = None) -> list:
    """Apply ``rules`` (a :class:`RuleSet` or a list of rules) bottom-up to a fixed point over ``outputs``.

    A rule's replacement that would change the dtype or rank is skipped (never applied). Applied rewrites are
    appended to ``log``. ``max_steps`` bounds the number of rewrites (default: 20 per node) so that a pair of
    rules undoing each other cannot loop forever.
    """
    ruleset = rules if isinstance(rules, RuleSet) else RuleSet(rules)
    outputs = list(outputs)
    uses: dict[int, int] = {}
    order = toposort(outputs)
    for node in order:
        for i in node.inputs:
            uses[id(i)] = uses.get(id(i), 0) + 1
    for o in outputs:
        uses[id(o)] = uses.get(id(o), 0) + 1

    def count(node: Node) -> int:
        return uses.get(id(node), 1)  # nodes built by rewrites feed only their replacement

    memo: dict[int, Node] = {}
    keep: list[Node] = []  # keeps memo keys alive so ids are not reused during the pass
    budget = max_steps if max_steps is not None else 20 * len(order) + 100
    stack: list = [(o, None) for o in reversed(outputs)]
    while stack:
        node, alias = stack.pop()
        if alias is not None:  # the replacement ``alias`` is fully rewritten: it stands for ``node``
            memo[id(node)] = memo[id(alias)]
            continue
        if id(node) in memo:
            continue
        pending = [i for i in node.inputs if id(i) not in memo]
        if pending:
            stack.append((node, None))
            stack.extend((i, None) for i in reversed(pending))
            continue
        new_inputs = [memo[id(i)] for i in node.inputs]
        current = node
        if any(a is not b for a, b in zip(new_inputs, node.inputs)):
            current = rebuild_fast(node, new_inputs)
            uses[id(current)] = count(node)
            keep.append(current)
        replacement = None if budget <= 0 else _apply_first(current, ruleset, count, log)
        if replacement is None:
            memo[id(node)] = current
            memo[id(current)] = current
            keep.append(node)
            continue
        budget -= 1
        uses[id(replacement)] = count(node)
        keep.extend((node, replacement))
        stack.append((node, replacement))
        stack.append((replacement, None))
    return [memo[id(o)] for o in outputs]


def _apply_first(node: Node, ruleset: RuleSet, count, log) -> Node | None:
    if node.is_leaf and not ruleset.any_op:
        return None
    for rule in ruleset.for_op(node.op):
        bound = rule.pattern.match(node, count, {})
        if bound is None:
            continue
        try:
            new = rule.callback(**bound)
        except (GraphTypeError, GraphValueError):  # the replacement does not type-check here: the rule declines
            continue
        if new is None or new is node or not fits(new, node):
            continue
        if log is not None:
            log.append(Rewrite(rule.name, node, new, node.source))
        return new
    return None


# --- building blocks for callbacks -----------------------------------------------------------------------------
def constant_like(value, dtype: str, source: str, weak: bool = False) -> Node:
    """A constant node of ``dtype`` holding ``value``, attributed to ``source`` (the node it replaces)."""
    arr = np.asarray(value, dtype=dtype)
    return Node("constant", (), {"value": ConstValue(arr), "weak": weak}, TensorType(arr.dtype, arr.shape), source)


def expr_text(node: Node, depth: int = 4) -> str:
    """``node``'s expression as short infix text, cut at ``depth`` levels (``…`` below).

    >>> from sympile.compiler.graph import input_node, make_node
    >>> x = input_node("float64", (), name="x")
    >>> expr_text(make_node("log", [make_node("add", [x, x])]))
    'log(x+x)'
    """
    return _text(node, depth)[0]


def _text(node: Node, depth: int) -> tuple[str, int]:
    if node.op == "input":
        return node.name or "<input>", ATOM
    if node.op == "shared":
        return node.name or "<shared>", ATOM
    if node.op == "constant":
        value = node.attrs["value"].value
        if value.ndim == 0:
            return repr(value.item()), ATOM if value.item() >= 0 else 6
        return repr(node.attrs["value"]), ATOM
    if depth <= 0:
        return "…", ATOM
    args = [_text(i, depth - 1) for i in node.inputs]
    attrs = {k: v for k, v in node.attrs.items() if k not in ("inner", "index")}
    if "inner" in node.attrs:
        attrs = {"inner": node.attrs["inner"], **attrs}
    return op_text(node.op, args, attrs)
