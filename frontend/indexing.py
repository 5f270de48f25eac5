"""Python index expressions -> the ``getitem``/``setitem`` ops' index attribute (numpy's rules).

>>> import sympile.tensor as st
>>> x = st.dmatrix('x')
>>> x[1:, ::-1].ndim
2
"""

from __future__ import annotations

import numpy as np

from sympile.compiler.errors import GraphIndexError, GraphTypeError
from sympile.compiler.graph import make_node, user_source_line

from .variable import TensorVariable, as_tensor_variable


def _consumed(item) -> int:
    if item is None:
        return 0
    if isinstance(item, TensorVariable) and item.dtype == "bool":
        return item.ndim
    if isinstance(item, np.ndarray) and item.dtype == bool:
        return item.ndim
    return 1


def build_index(ndim: int, key) -> tuple[tuple, list]:
    """The index spec and the index input nodes for ``x[key]`` with ``x`` of rank ``ndim``."""
    if not isinstance(key, tuple):
        key = (key,)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise GraphIndexError("an index can only have a single ellipsis ('...')")
    nodes: list = []

    def ref(var: TensorVariable):
        nodes.append(var.node)
        return ("in", len(nodes) - 1)

    def bound(v):
        if v is None:
            return None
        if isinstance(v, (bool, np.bool_)):
            raise GraphTypeError(f"slice bounds must be integers or None, got {v!r} (at {user_source_line()})")
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, TensorVariable):
            return ref(v)
        raise GraphTypeError(
            f"slice bounds must be integers, None or integer scalars, got {v!r} (at {user_source_line()})"
        )

    spec = []
    for item in key:
        if item is Ellipsis:
            used = sum(_consumed(k) for k in key if k is not Ellipsis)
            fill = max(ndim - used, 0)
            # an empty Ellipsis still separates advanced indices in numpy's placement rule: keep a marker
            spec.extend([("slice", None, None, None)] * fill if fill else [("ellipsis",)])
        elif item is None:
            spec.append(("new",))
        elif isinstance(item, (bool, np.bool_)):
            raise GraphTypeError("a bare boolean is not a valid index; use a boolean array mask")
        elif isinstance(item, (int, np.integer)):
            spec.append(("int", int(item)))
        elif isinstance(item, slice):
            spec.append(("slice", bound(item.start), bound(item.stop), bound(item.step)))
        else:
            if isinstance(item, (float, np.floating, str)):
                raise GraphTypeError(
                    f"indices must be integers, slices, None, ... or arrays, got {item!r} (at {user_source_line()})"
                )
            var = as_tensor_variable(item)
            if var.dtype not in ("bool",) and np.dtype(var.dtype).kind not in "iu":
                raise GraphTypeError(
                    f"arrays used as indices must be of integer or boolean type, got {var.type.short()}"
                    f" (at {user_source_line()})"
                )
            if var.ndim == 0 and var.dtype != "bool":
                spec.append(("int", ref(var)))
            elif var.ndim == 0:
                raise GraphTypeError("a 0-d boolean index is not supported; use a boolean array mask")
            else:
                spec.append(("array", ref(var)))
    return tuple(spec), nodes


def getitem(x: TensorVariable, key) -> TensorVariable:
    spec, nodes = build_index(x.ndim, key)
    return TensorVariable(make_node("getitem", [x.node, *nodes], index=spec))


def _set_or_inc(sub, y, mode: str) -> TensorVariable:
    if not isinstance(sub, TensorVariable) or sub.node.op != "getitem":
        raise GraphTypeError(f"{mode}_subtensor expects an indexed variable such as x[1:3], got {sub!r}")
    node = sub.node
    y = as_tensor_variable(y)
    base = node.inputs[0]
    inputs = [base, y.node, *node.inputs[1:]]
    out = TensorVariable(make_node("setitem", inputs, index=node.attrs["index"], mode=mode))
    if base.op == "getitem":  # x[a][b]: the modified x[a] is written back into x, as Theano does
        return _set_or_inc(TensorVariable(base), out, "set")
    return out


def set_subtensor(sub, y) -> TensorVariable:
    """A copy of the indexed tensor with ``sub``'s elements replaced by ``y``.

    >>> import sympile.tensor as st
    >>> x = st.dvector('x')
    >>> st.set_subtensor(x[:2], 0.0).eval({x: [1.0, 2.0, 3.0]})
    array([0., 0., 3.])
    """
    return _set_or_inc(sub, y, "set")


def inc_subtensor(sub, y) -> TensorVariable:
    """A copy of the indexed tensor with ``y`` added at ``sub``; repeated indices accumulate (np.add.at)."""
    return _set_or_inc(sub, y, "inc")
