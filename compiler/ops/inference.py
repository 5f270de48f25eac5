"""Shared pieces of type inference: numpy's own dtype rules, axes, static integer values.

dtype rules are taken from numpy itself: the op's reference implementation runs on tiny dummy values of the
input dtypes (Python scalars for weak constants, as in NEP 50), so sympile promotes exactly as numpy does.
"""

from __future__ import annotations

import operator

import numpy as np

from ..errors import GraphIndexError, GraphTypeError, GraphValueError
from ..graph import Node, const_value


class DtypeOverflowError(GraphTypeError, OverflowError):
    """A Python integer that does not fit the other operand's dtype (NEP 50): numpy's OverflowError."""


def dummy(node: Node, ndim: int | None = None):
    """A stand-in value with ``node``'s dtype: its Python value if it is a weak constant, else ones."""
    if node.op == "constant" and node.attrs.get("weak"):
        return node.attrs["value"].value.item()
    nd = node.ndim if ndim is None else ndim
    return np.ones((1,) * nd, dtype=node.dtype)


def dtype_key(node: Node):
    if node.op == "constant" and node.attrs.get("weak"):
        value = node.attrs["value"].value.item()
        return ("weak", type(value).__name__, value if isinstance(value, int) else 0)
    return node.dtype


def result_dtype(fn, inputs, attrs=None, ndim0: bool = True) -> str:
    """dtype numpy gives for ``fn(*inputs)``; TypeErrors (e.g. ``-bool``) propagate as GraphTypeError."""
    key = (fn, tuple(dtype_key(i) for i in inputs), tuple(sorted((attrs or {}).items())) if attrs else ())
    hit = _DTYPE_CACHE.get(key)
    if hit is not None:
        return hit
    args = [dummy(i, 0 if ndim0 else None) for i in inputs]
    try:
        with np.errstate(all="ignore"):
            out = fn(*args) if attrs is None else fn(attrs, *args)
    except OverflowError as exc:  # int8 tensor + 300: numpy raises OverflowError, and so do we
        raise DtypeOverflowError(str(exc)) from None
    except TypeError as exc:
        raise GraphTypeError(str(exc)) from None
    name = np.asarray(out).dtype.name
    _DTYPE_CACHE[key] = name
    return name


_DTYPE_CACHE: dict = {}


def normalize_axis(axis, ndim: int, allow_tuple: bool = True) -> tuple | None:
    """``axis`` (int, tuple or None) as a sorted tuple of non-negative ints; ``None`` means all axes."""
    if axis is None:
        return None
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    if not allow_tuple and len(axes) != 1:
        raise GraphTypeError(f"axis must be an int or None, got {axis!r}")
    out = []
    for a in axes:
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)):
            raise GraphTypeError(f"axis must be an int, a tuple of ints or None, got {axis!r}")
        if not -ndim <= a < ndim:
            raise GraphValueError(f"axis {a} is out of bounds for a tensor of rank {ndim}")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise GraphValueError(f"repeated axis in {axis!r}")
    return tuple(sorted(out))


def static_int(node: Node) -> int | None:
    """The value of an integer scalar node when it is known at build time, else ``None``.

    Knows constants, ``shape(x)[k]`` where x's dim k is static, and simple arithmetic on those.
    """
    if node.ndim != 0 or node.type.np_dtype.kind not in "iub":
        return None
    value = const_value(node)
    if value is not None:
        return int(value)
    if node.op == "getitem" and node.inputs[0].op == "shape" and len(node.attrs["index"]) == 1:
        (entry,) = node.attrs["index"]
        if entry[0] == "int" and isinstance(entry[1], int):
            return node.inputs[0].inputs[0].shape[entry[1]]
    if node.op in _STATIC_ARITH and len(node.inputs) == 2:
        a, b = (static_int(i) for i in node.inputs)
        if a is not None and b is not None:
            try:
                return int(_STATIC_ARITH[node.op](a, b))
            except ZeroDivisionError:
                return None
    if node.op == "cast":
        return static_int(node.inputs[0])
    return None


_STATIC_ARITH = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "floor_div": operator.floordiv}


def static_int_vector(node: Node) -> list | None:
    """Per-entry static values of a 1-d integer node (``None`` where unknown), or ``None`` if opaque."""
    if node.ndim != 1 or node.type.np_dtype.kind not in "iu":
        return None
    value = const_value(node)
    if value is not None:
        return [int(v) for v in value]
    if node.op == "shape":
        return list(node.inputs[0].shape)
    if node.op == "stack" and node.attrs.get("axis") == 0:
        return [static_int(i) for i in node.inputs]
    if node.shape[0] is not None:
        return [None] * node.shape[0]
    return None


def check_int_scalar(node: Node, what: str) -> None:
    if node.ndim != 0 or node.type.np_dtype.kind not in "iu":
        raise GraphTypeError(f"{what} must be an integer scalar, got {node.type.short()}")


def check_index_in_range(index: int, dim, axis: int) -> None:
    if dim is not None and not -dim <= index < dim:
        raise GraphIndexError(f"index {index} is out of bounds for axis {axis} with size {dim}")
