"""The graph IR: immutable nodes, leaves (inputs, constants, shared references), toposort, substitution.

A node is ``op(inputs..., attrs) -> TensorType``. Nodes never change after construction (only their cosmetic
``name`` may be set); rewrites build new ones. Each node remembers the user's source line that created it,
so errors found later (at compile or run time) can point at the user's code.

>>> from sympile.compiler.graph import input_node
>>> x = input_node("float64", (None,), name="x")
>>> x.type
TensorType(float64, (?,))
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
from collections.abc import Iterable, Sequence

import numpy as np

from .errors import GraphTypeError, with_context
from .types import TensorType

# Frames whose file lives in one of these folders belong to sympile, not to the user: the source line
# recorded for a node is the first frame outside them. frontend/ and runtime/ add themselves on import.
INTERNAL_DIRS: set[str] = {os.path.dirname(os.path.abspath(__file__))}
_uid = itertools.count()


def register_internal_dir(path: str) -> None:
    INTERNAL_DIRS.add(os.path.dirname(os.path.abspath(path)))
    _internal_files.clear()


def user_source_line() -> str:
    """``file:line`` of the innermost caller outside sympile, or ``'<unknown>'``."""
    frame = sys._getframe(1)
    internal = _internal_files
    while frame is not None:
        filename = frame.f_code.co_filename
        known = internal.get(filename)
        if known is None:  # each file is looked at once: abspath costs ~2 us, and every node asks
            known = internal[filename] = os.path.dirname(os.path.abspath(filename)) in INTERNAL_DIRS
        if not known:
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


#: co_filename -> whether it lies in one of INTERNAL_DIRS (cleared when a directory is registered)
_internal_files: dict[str, bool] = {}


class ConstValue:
    """A constant's value, hashable by content so equal constants can be merged."""

    __slots__ = ("value", "_key")

    def __init__(self, value: np.ndarray):
        value = np.array(value, copy=True)
        value.setflags(write=False)
        self.value = value
        self._key = (value.dtype.str, value.shape, hashlib.blake2b(value.tobytes(), digest_size=16).digest())

    def __eq__(self, other):
        return isinstance(other, ConstValue) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        if self.value.size <= 8:
            text = np.array2string(self.value, separator=",", threshold=8).replace("\n", "")
            return text
        return f"<{self.value.dtype.name}{list(self.value.shape)} #{self._key[2].hex()[:10]}>"


class Node:
    """An immutable graph node. Build them with :func:`make_node` (ops) or the leaf constructors."""

    __slots__ = ("op", "inputs", "attrs", "type", "source", "name", "__weakref__")

    def __init__(self, op: str, inputs: tuple, attrs: dict, type_: TensorType, source: str, name=None):
        set_ = object.__setattr__
        set_(self, "op", op)
        set_(self, "inputs", tuple(inputs))
        set_(self, "attrs", dict(attrs))
        set_(self, "type", type_)
        set_(self, "source", source)
        set_(self, "name", name)

    def __setattr__(self, key, value):
        if key != "name":
            raise AttributeError(f"graph nodes are immutable (tried to set {key!r}); build a new node")
        object.__setattr__(self, key, value)

    # identity semantics: two nodes are the same variable only if they are the same object
    __hash__ = object.__hash__

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def ndim(self) -> int:
        return self.type.ndim

    @property
    def is_leaf(self) -> bool:
        return self.op in LEAF_OPS

    def structural_key(self) -> tuple:
        """What makes two nodes compute the same thing: op, inputs (by identity), attrs, type."""
        if self.op in ("input", "shared"):
            return (self.op, self.attrs["uid"])
        return (self.op, tuple(id(i) for i in self.inputs), tuple(sorted(self.attrs.items())), self.type)

    def describe(self) -> str:
        """``op 'name' <float64[?,3]> (created at file:line)`` for error messages."""
        label = self.op + (f" {self.name!r}" if self.name else "")
        return f"{label} <{self.type.short()}> (created at {self.source})"

    def __repr__(self):
        return f"Node({self.op}{' ' + repr(self.name) if self.name else ''}, {self.type.short()})"


LEAF_OPS = frozenset({"input", "constant", "shared"})


def input_node(dtype, shape, name=None) -> Node:
    """A symbolic function input; two inputs are distinct even with the same name."""
    return Node("input", (), {"uid": next(_uid)}, TensorType(dtype, shape), user_source_line(), name)


def shared_node(dtype, shape, name=None) -> Node:
    """A reference to a shared variable; ``attrs['uid']`` is the key the runtime maps to its storage."""
    return Node("shared", (), {"uid": next(_uid)}, TensorType(dtype, shape), user_source_line(), name)


def constant_node(value, dtype=None, weak: bool = False, name=None) -> Node:
    """A constant. ``weak`` marks Python scalars, which take part in dtype promotion as in numpy's NEP 50."""
    arr = np.asarray(value, dtype=dtype)
    type_ = TensorType(arr.dtype, arr.shape)
    return Node("constant", (), {"value": ConstValue(arr), "weak": weak}, type_, user_source_line(), name)


def const_value(node: Node):
    """The numpy value of a constant node, else ``None``."""
    return node.attrs["value"].value if node.op == "constant" else None


def make_node(op: str, inputs: Sequence[Node], source: str | None = None, **attrs) -> Node:
    """Build ``op(inputs, **attrs)``, checking arity and inferring the output type through the op table.

    Errors name the op, the input types and the user's source line.
    """
    from .optable import OPS  # the table imports this module

    opdef = OPS[op]
    inputs = tuple(inputs)
    source = source or user_source_line()
    try:
        opdef.check_arity(len(inputs))
        attrs = opdef.normalize(inputs, attrs)
        type_ = opdef.infer(inputs, attrs)
    except (TypeError, ValueError) as exc:
        shown = ", ".join(i.type.short() for i in inputs)
        raise with_context(exc, f"{op}({shown}) at {source}") from None
    return Node(op, inputs, attrs, type_, source)


def rebuild(node: Node, inputs: Sequence[Node]) -> Node:
    """``node`` with new inputs (same op, attrs, source line and name); type re-inferred."""
    if node.is_leaf:
        return node
    new = make_node(node.op, inputs, source=node.source, **node.attrs)
    if node.name:
        new.name = node.name
    return new


def toposort(outputs: Iterable[Node]) -> list[Node]:
    """All nodes reachable from ``outputs``, each after its inputs (iterative: deep graphs are fine)."""
    order, seen = [], set()
    for root in outputs:
        if id(root) in seen:
            continue
        stack = [(root, 0)]
        while stack:
            node, i = stack.pop()
            if i == 0 and id(node) in seen:
                continue
            if i < len(node.inputs):
                stack.append((node, i + 1))
                child = node.inputs[i]
                if id(child) not in seen:
                    stack.append((child, 0))
            else:
                seen.add(id(node))
                order.append(node)
    return order


def leaves(outputs: Iterable[Node], op: str) -> list[Node]:
    return [n for n in toposort(outputs) if n.op == op]


def substitute(outputs: Sequence[Node], replace: dict) -> list[Node]:
    """Rebuild ``outputs`` with ``replace`` (``{old node: new node}``) applied everywhere below them."""
    memo = {id(k): v for k, v in replace.items()}
    for old, new in replace.items():
        if old.ndim != new.ndim:
            raise GraphTypeError(f"cannot replace {old.describe()} by {new.describe()}: rank {old.ndim} != {new.ndim}")
    for node in toposort(outputs):
        if id(node) in memo:
            continue
        new_inputs = [memo[id(i)] for i in node.inputs]
        if all(a is b for a, b in zip(new_inputs, node.inputs)):
            memo[id(node)] = node
        else:
            memo[id(node)] = rebuild(node, new_inputs)
    return [memo[id(o)] for o in outputs]


def canonical_text(outputs: Sequence[Node], inputs: Sequence[Node] = ()) -> str:
    """A flat SSA text of the graph that does not depend on object identity or names.

    Function inputs are numbered by position, other leaves by order of appearance; used for golden tests,
    diffs and cache keys.

    >>> x = input_node("float64", (None,), name="x")
    >>> print(canonical_text([x], [x]))
    %0 = input #0 :: float64[?]
    return %0
    """
    position = {id(n): i for i, n in enumerate(inputs)}
    ids: dict[int, str] = {}
    lines = []
    n_shared = 0
    for node in toposort(outputs):
        name = f"%{len(ids)}"
        ids[id(node)] = name
        if node.op == "input":
            detail = f"#{position[id(node)]}" if id(node) in position else "free"
        elif node.op == "shared":
            detail = f"@{n_shared}"
            n_shared += 1
        else:
            args = [ids[id(i)] for i in node.inputs]
            args += [f"{k}={_attr_text(v)}" for k, v in sorted(node.attrs.items())]
            detail = " ".join(args)
        lines.append(f"{name} = {node.op} {detail} :: {node.type.short()}".replace("  ", " "))
    lines.append("return " + " ".join(ids[id(o)] for o in outputs))
    return "\n".join(lines)


def _attr_text(value) -> str:
    if isinstance(value, Node):
        return value.op
    return repr(value)
