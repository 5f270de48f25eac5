"""Random expression graphs (hypothesis) compiled with sympile against the same expression run by numpy.

A graph is drawn as a small tree over 1-3 float64 inputs of broadcast-compatible shapes: elementwise unary and
binary ops (with Python-float constants on either side), broadcasting, reductions with an axis or None and
keepdims, and a few shape ops (.T, flatten, reversal, expand_dims). The tree is evaluated twice by the same
function, once on numpy arrays and once on symbolic inputs; the compiled result must match numpy exactly without
the optimizer, and within a tight tolerance with it (rewrites may reassociate or use more accurate forms).
Examples are derandomized so a run is reproducible; a stress run with more examples and random seeds is a
matter of raising ``max_examples`` and dropping ``derandomize``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp
from oracle import NP, assert_same, run

import sympile.tensor as st
from sympile.compiler.optable import OPS


class _Reference(type(NP)):
    """numpy, with sympile's own numpy formulas for the ops numpy lacks (their accuracy is tested elsewhere)."""

    sigmoid = staticmethod(OPS["sigmoid"].extra["numpy"])
    softplus = staticmethod(OPS["softplus"].extra["numpy"])


REF = _Reference()

UNARY = ["neg", "abs", "exp", "log1p", "sin", "cos", "tanh", "arctan", "sigmoid", "softplus", "sqr", "sqrt"]
JUMPS = ["floor", "sign"]  # discontinuous: one ulp of difference can change the result by 1
BINARY = ["add", "sub", "mul", "true_div", "maximum", "minimum", "arctan2"]
REDUCE = ["sum", "mean", "max", "min", "prod", "std"]


def evaluate(m, tree, inputs):
    """The value of ``tree`` with namespace ``m`` (``sympile.tensor`` or the numpy reference ``REF``)."""
    kind = tree[0]
    if kind == "in":
        return inputs[tree[1]]
    if kind == "un":
        return getattr(m, tree[1])(evaluate(m, tree[2], inputs))
    if kind == "bin":
        return getattr(m, tree[1])(evaluate(m, tree[2], inputs), evaluate(m, tree[3], inputs))
    if kind == "const":  # a Python float on the left or right of an operator
        x, c = evaluate(m, tree[3], inputs), tree[2]
        return {"+": lambda: x + c, "r-": lambda: c - x, "*": lambda: x * c, "r/": lambda: c / x}[tree[1]]()
    if kind == "where":
        a, b = evaluate(m, tree[1], inputs), evaluate(m, tree[2], inputs)
        return m.where(m.gt(a, b), a, b * 0.5)
    if kind == "reduce":
        _, name, axis, keepdims, child = tree
        return getattr(m, name)(evaluate(m, child, inputs), axis=axis, keepdims=keepdims)
    x = evaluate(m, tree[1], inputs)
    if kind == "T":
        return x.T
    if kind == "flatten":
        return m.reshape(x, (-1,))
    if kind == "reverse":
        return x[::-1]
    if kind == "expand":
        return m.expand_dims(x, 0)
    raise AssertionError(kind)


def _broadcast(a, b):
    try:
        return np.broadcast_shapes(a, b)
    except ValueError:
        return None


@hs.composite
def trees(draw, shapes, depth=4, top=True, jumps=True):
    """``(tree, shape)``: a random expression over inputs of ``shapes`` and the shape it computes.

    ``jumps=False`` leaves out discontinuous ops (floor, sign, where), whose results a rewrite that changes
    rounding by one ulp may legitimately change by a lot.
    """
    if depth == 0 or (not top and draw(hs.integers(0, 3)) == 0):
        i = draw(hs.integers(0, len(shapes) - 1))
        return ("in", i), shapes[i]
    kind = draw(hs.sampled_from(["un", "bin", "bin", "const", "reduce", "shape"] + (["where"] if jumps else [])))
    if kind == "un":
        child, shape = draw(trees(shapes, depth - 1, False, jumps))
        return ("un", draw(hs.sampled_from(UNARY + (JUMPS if jumps else []))), child), shape
    if kind in ("bin", "where"):
        left, ls = draw(trees(shapes, depth - 1, False, jumps))
        if draw(hs.booleans()):
            right, rs = left, ls  # the same subexpression twice: something for common-subexpression merging
        else:
            right, rs = draw(trees(shapes, depth - 1, False, jumps))
        shape = _broadcast(ls, rs)
        if shape is None:  # reduce the right side to a scalar so the two always broadcast
            right, rs = ("reduce", "sum", None, False, right), ()
            shape = ls
        if kind == "where":
            return ("where", left, right), shape
        return ("bin", draw(hs.sampled_from(BINARY)), left, right), shape
    child, shape = draw(trees(shapes, depth - 1, False, jumps))
    if kind == "const":
        c = draw(hs.sampled_from([0.5, -2.0, 3.0, 1e-3]))
        return ("const", draw(hs.sampled_from(["+", "r-", "*", "r/"])), c, child), shape
    if kind == "reduce":
        axes = [None, *range(len(shape)), *range(-len(shape), 0)]
        axis = draw(hs.sampled_from(axes))
        keepdims = draw(hs.booleans())
        name = draw(hs.sampled_from(REDUCE))
        if axis is None:
            out = (1,) * len(shape) if keepdims else ()
        else:
            a = axis % len(shape)
            out = tuple(1 if i == a else d for i, d in enumerate(shape)) if keepdims else shape[:a] + shape[a + 1 :]
        return ("reduce", name, axis, keepdims, child), out
    op = draw(hs.sampled_from(["T", "flatten", "expand"] + (["reverse"] if shape else [])))
    if op == "T":
        return ("T", child), shape[::-1]
    if op == "flatten":
        return ("flatten", child), (int(np.prod(shape)),)
    if op == "expand":
        return ("expand", child), (1, *shape)
    return ("reverse", child), shape


@hs.composite
def graphs(draw, jumps=True):
    """Input arrays of broadcast-compatible shapes and a tree over them."""
    a, b = draw(hs.integers(1, 4)), draw(hs.integers(1, 4))
    menu = [(a, b), (b,), (a, 1), (1, b), (), (2, a, b)]
    shapes = draw(hs.lists(hs.sampled_from(menu), min_size=1, max_size=3))
    elements = hs.floats(-5, 5, allow_nan=False, width=64)
    arrays = [draw(hnp.arrays(np.float64, s, elements=elements)) for s in shapes]
    tree, shape = draw(trees(shapes, jumps=jumps))
    return tree, shape, arrays


def _numpy_value(tree, arrays):
    with np.errstate(all="ignore"):
        return np.asarray(evaluate(REF, tree, arrays))


@settings(max_examples=50, deadline=None, derandomize=True)
@given(graphs())
def test_random_graph_without_optimizer_equals_numpy_exactly(case):
    tree, shape, arrays = case
    want = _numpy_value(tree, arrays)
    assert want.shape == shape
    out, got = run(lambda *xs: evaluate(st, tree, xs), *arrays, optimize=False)
    assert out.dtype == want.dtype.name
    assert_same(got, want)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(graphs(jumps=False))
def test_random_graph_with_optimizer_matches_numpy(case):
    tree, _, arrays = case
    want = _numpy_value(tree, arrays)
    _, got = run(lambda *xs: evaluate(st, tree, xs), *arrays, optimize=True)
    assert_same(got, want, rtol=1e-9, atol=1e-12)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(graphs())
def test_random_graph_static_shapes_are_inferred(case):
    """With the inputs' shapes known at build time, the graph's static shape is the computed one."""
    tree, shape, arrays = case
    out, got = run(lambda *xs: evaluate(st, tree, xs), *arrays, optimize=False, static=True)
    assert out.static_shape == shape == got.shape
