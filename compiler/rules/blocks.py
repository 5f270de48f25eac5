"""Building blocks for rule callbacks: make nodes at the replaced node's source line, type checks.

>>> from sympile.compiler.graph import input_node, constant_node
>>> x = input_node("float32", (None, 3), name="x")
>>> absorbed(constant_node(1.0, weak=True), x), absorbed(constant_node([[1.0] * 3] * 2), x)
(True, False)
"""

from __future__ import annotations

from ..graph import Node, make_node


def mk(op: str, *inputs: Node, at: Node, **attrs) -> Node:
    """``op(inputs, **attrs)`` attributed to the user's source line of ``at`` (the node being replaced)."""
    return make_node(op, inputs, source=at.source, **attrs)


def absorbed(other: Node, x: Node) -> bool:
    """Whether broadcasting ``other`` against ``x`` leaves x's shape unchanged (for any runtime shape of x).

    True when ``other`` has no more dimensions than ``x`` and each of its dimensions is 1 or equals x's static
    dimension; an unknown dimension of x could be 1 at run time and be enlarged, so it only absorbs 1.
    """
    if other.ndim > x.ndim:
        return False
    for d_other, d_x in zip(other.shape[::-1], x.shape[::-1]):
        if d_other != 1 and (d_x is None or d_other != d_x):
            return False
    return True


def same_type(node: Node, x: Node) -> bool:
    """``node`` may be replaced by ``x`` itself: same dtype, rank and static shape."""
    return node.dtype == x.dtype and node.shape == x.shape


def as_dtype_of(x: Node, ref: Node) -> Node:
    """``x`` cast to ``ref``'s dtype when it differs (keeps promotion the original graph did)."""
    return x if x.dtype == ref.dtype else mk("cast", x, at=ref, dtype=ref.dtype)


def is_float(node: Node) -> bool:
    return node.type.np_dtype.kind == "f"
