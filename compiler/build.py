"""Small node builders that keep gradient rules readable, plus the markers of ops without a gradient.

Every builder is a thin call of :func:`compiler.graph.make_node`; Python numbers become *weak* constants, so
``mul(g, 0.5)`` keeps ``g``'s dtype (float32 stays float32). :func:`unbroadcast` is the one place where the
cotangent of a broadcast input is summed back to the input's shape.

>>> from sympile.compiler.graph import input_node
>>> x = input_node("float32", (None, 3))
>>> mul(x, 0.5).type
TensorType(float32, (?, 3))
"""

from __future__ import annotations

import numpy as np

from .graph import Node, constant_node, make_node


def NO_GRAD(node: Node, g: Node) -> list:  # noqa: N802 - a marker, spelled like a constant
    """Rule of ops whose gradient is zero everywhere it exists (comparisons, floor, argmax, integer math).

    The inputs stay *connected* (their gradient is zero, not missing).
    """
    return [None] * len(node.inputs)


def DISCONNECTED(node: Node, g: Node) -> list:  # noqa: N802
    """Rule of ops whose output does not depend on their inputs' values for differentiation purposes
    (``shape``, ``disconnected_grad``): the inputs are *disconnected* from the output."""
    return [None] * len(node.inputs)


def lift(x) -> Node:
    """A node for ``x``: nodes pass through, Python numbers become weak constants."""
    if isinstance(x, Node):
        return x
    return constant_node(x, weak=True)


def ap(op: str, *inputs, **attrs) -> Node:
    """``op(inputs, **attrs)`` with numbers lifted to weak constants."""
    return make_node(op, [lift(i) for i in inputs], **attrs)


def _binary(op: str):
    def fn(a, b) -> Node:
        return ap(op, a, b)

    fn.__name__ = op
    fn.__doc__ = f"``{op}(a, b)`` (numbers become weak constants)."
    return fn


def _unary(op: str):
    def fn(a) -> Node:
        return ap(op, a)

    fn.__name__ = op
    fn.__doc__ = f"``{op}(a)``."
    return fn


add, sub, mul, div = _binary("add"), _binary("sub"), _binary("mul"), _binary("true_div")
eq, gt, lt, ge, le = _binary("eq"), _binary("gt"), _binary("lt"), _binary("ge"), _binary("le")
and_, floor_div, pow_ = _binary("and_"), _binary("floor_div"), _binary("pow")
neg, exp, log, sqrt, sqr = _unary("neg"), _unary("exp"), _unary("log"), _unary("sqrt"), _unary("sqr")
sin, cos, sinh, cosh, sign = _unary("sin"), _unary("cos"), _unary("sinh"), _unary("cosh"), _unary("sign")
sigmoid, reciprocal = _unary("sigmoid"), _unary("reciprocal")


def where(cond, a, b) -> Node:
    return ap("where", cond, a, b)


def cast(x: Node, dtype) -> Node:
    """``x`` as ``dtype`` (no node when it already is)."""
    return x if x.dtype == np.dtype(dtype).name else ap("cast", x, dtype=np.dtype(dtype).name)


def total(a, axis=None, keepdims: bool = False) -> Node:
    """``sum(a, axis, keepdims)``."""
    return ap("sum", a, axis=axis, keepdims=keepdims)


def dimshuffle(x: Node, order) -> Node:
    order = tuple(order)
    if order == tuple(range(x.ndim)):
        return x
    return ap("dimshuffle", x, new_order=order)


def swap_last2(x: Node) -> Node:
    """``x`` with its last two axes exchanged."""
    order = list(range(x.ndim))
    order[-2], order[-1] = order[-1], order[-2]
    return dimshuffle(x, order)


def shape_owner(x: Node) -> Node:
    """A node with ``x``'s shape that is cheapest to keep: down through elementwise ops, to an operand that
    provably has the result's shape (the other operands broadcast against it), so that taking a shape does not
    keep an intermediate result alive only for its dimensions.

    >>> from sympile.compiler.graph import input_node
    >>> x = input_node("float64", (None, None))
    >>> shape_owner(ap("exp", ap("mul", x, 2.0))) is x
    True
    """
    from .optable import OPS  # the op table imports the ops, which import this module

    while not x.is_leaf and OPS[x.op].kind == "elemwise":
        owner = next((i for i in x.inputs if i.ndim == x.ndim and i.type.np_dtype.kind != "b"
                      and all(_not_broadcast(i, a, x.inputs) for a in range(x.ndim))), None)  # fmt: skip
        if owner is None:
            break
        x = owner
    return x


def shape_of(x: Node) -> Node:
    """``x``'s shape vector (int64), taken from :func:`shape_owner`."""
    return ap("shape", shape_owner(x))


def shape_entry(x: Node, i: int) -> Node:
    """``x.shape[i]`` as an int64 scalar: a constant when the dimension is static."""
    if x.shape[i] is not None:
        return constant_node(np.int64(x.shape[i]))
    return ap("getitem", shape_of(x), index=(("int", i),))


def shape_entries(x: Node) -> list:
    return [shape_entry(x, i) for i in range(x.ndim)]


def broadcast_like(g: Node, x: Node) -> Node:
    """``g`` broadcast to ``x``'s shape (an ``alloc``); nothing to do when the static shapes agree."""
    if g.shape == x.shape and None not in x.shape:
        return g
    return ap("alloc", g, *shape_entries(x))


def zeros_like(x: Node, dtype=None) -> Node:
    """Zeros with ``x``'s shape, in ``dtype`` (default ``x``'s)."""
    zero = constant_node(np.zeros((), dtype=dtype or x.dtype))
    return ap("alloc", zero, *shape_entries(x)) if x.ndim else zero


def count(x: Node, axes, dtype) -> Node:
    """How many elements of ``x`` one reduction over ``axes`` (None: all) combines, as a ``dtype`` scalar."""
    axes = range(x.ndim) if axes is None else axes
    dims = [x.shape[a] for a in axes]
    if None not in dims:
        return constant_node(np.asarray(int(np.prod(dims, dtype=np.int64)), dtype=dtype))
    out = constant_node(np.ones((), dtype=dtype))
    for a in axes:
        out = mul(out, cast(shape_entry(x, a), dtype))
    return out


def restore_axes(g: Node, axes, ndim: int, keepdims: bool) -> Node:
    """A reduction's output (or its cotangent) with the reduced axes back as size-1 axes (keepdims form)."""
    if keepdims:
        return g
    axes = tuple(range(ndim)) if axes is None else axes
    kept = iter(range(g.ndim))
    return dimshuffle(g, ["x" if a in axes else next(kept) for a in range(ndim)])


def unbroadcast(g: Node, ref: Node, siblings=()) -> Node:
    """Sum the cotangent ``g`` of a broadcast value over the axes it was broadcast along, to ``ref``'s shape.

    The only place where broadcasting is undone. Leading axes and axes where ``ref`` has static size 1 are
    summed statically; where ``ref``'s size is unknown (it may be 1 at run time) a ``sum_to`` node sums at run
    time, unless ``siblings`` (the other operands of the broadcast) prove the size was not broadcast: they
    all have size 1 there or lack the axis.

    >>> from sympile.compiler.graph import input_node
    >>> b = input_node("float64", (1, 3))
    >>> unbroadcast(input_node("float64", (5, 4, 3)), b).shape
    (1, 3)
    """
    lead = g.ndim - ref.ndim
    axes = list(range(lead))
    dynamic = False
    for i, d in enumerate(ref.shape):
        gd = g.shape[lead + i]
        if d == 1 and gd != 1:
            axes.append(lead + i)
        elif d is None and gd != 1 and not _not_broadcast(ref, i, siblings):
            dynamic = True
    if axes:
        g = total(g, axis=tuple(axes), keepdims=True)
        if lead:
            g = dimshuffle(g, range(lead, g.ndim))
    if dynamic:
        g = ap("sum_to", g, shape_of(ref))
    return g


def _not_broadcast(ref: Node, i: int, siblings) -> bool:
    """Whether axis ``i`` of ``ref`` is surely not broadcast against ``siblings`` (numpy alignment)."""
    if not siblings:
        return False
    axis_from_end = ref.ndim - i
    for s in siblings:
        if s is ref:
            continue
        if s.ndim >= axis_from_end and s.shape[s.ndim - axis_from_end] != 1:
            return False
    return True
