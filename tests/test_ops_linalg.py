"""Linear algebra against numpy: dot (every np.dot rank case), matmul / ``@`` (batched, 1-d), outer, tensordot."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from oracle import ALL_DTYPES, check, layouts, sample

import sympile as sp
import sympile.tensor as st

DOT_SHAPES = [
    ((), ()), ((), (3,)), ((3,), ()), ((2, 3), ()), ((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)),
    ((2, 3), (3, 4)), ((2, 2, 3), (3,)), ((2, 2, 3), (3, 4)), ((3,), (2, 3, 4)), ((2, 3), (5, 3, 4)),
    ((2, 2, 3), (5, 3, 4)), ((0, 3), (3, 2)), ((2, 0), (0, 4)), ((0,), (0,)),
]  # fmt: skip
MATMUL_SHAPES = [
    ((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)),
    ((5, 2, 3), (5, 3, 4)), ((1, 2, 3), (4, 3, 2)), ((2, 1, 2, 3), (5, 3, 4)), ((3,), (5, 3, 4)),
    ((5, 2, 3), (3,)), ((0, 2, 3), (3, 4)), ((2, 0), (0, 3)),
]  # fmt: skip


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("sa,sb", DOT_SHAPES, ids=str)
def test_dot_rank_cases(sa, sb, static):
    a, b = sample(sa, "float64", seed=0), sample(sb, "float64", seed=1)
    check(lambda m, x, y: m.dot(x, y), a, b, static=static)
    check(lambda m, x, y: x.dot(y), a, b, static=static)


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=str)
def test_matmul_rank_cases(sa, sb, static):
    a, b = sample(sa, "float64", seed=2), sample(sb, "float64", seed=3)
    check(lambda m, x, y: m.matmul(x, y), a, b, static=static)
    check(lambda m, x, y: x @ y, a, b, static=static)


@pytest.mark.parametrize("da,db", list(itertools.product(ALL_DTYPES, repeat=2)))
def test_dot_and_matmul_dtypes(da, db):
    a, b = sample((2, 3), da, seed=4), sample((3, 2), db, seed=5)
    check(lambda m, x, y: (m.dot(x, y), m.matmul(x, y), m.tensordot(x, y, 1)), a, b)


def test_dot_with_python_scalars_follows_numpy():
    a = sample((2, 3), "float32", seed=6)
    check(lambda m, x: m.dot(x, 2.0), a)
    check(lambda m, x: m.dot(3, x), a)
    check(lambda m, x: m.dot(x, np.float64(2.0)), a)


@pytest.mark.parametrize("layout", ["C", "F", "strided", "negative"])
def test_non_contiguous_operands(layout):
    a = layouts(sample((3, 4), "float64", seed=7))[layout]
    b = layouts(sample((4, 2), "float32", seed=8))[layout]
    check(lambda m, x, y: (m.dot(x, y), x @ y, x.T @ x, m.dot(y.T, x.T), m.outer(x[0], y[:, 0])), a, b)


def test_constant_operands_on_either_side():
    w = sample((3, 2), "float64", seed=9)
    a = sample((4, 3), "float64", seed=10)
    check(lambda m, x: x @ w, a)
    check(lambda m, x: w.T @ x.T, a)  # ndarray @ variable defers to the variable's __rmatmul__
    check(lambda m, x: m.dot(w.T, x.T), a)


@pytest.mark.parametrize("sa,sb", [((3,), (4,)), ((2, 2), (3,)), ((), (3,)), ((2, 3), (2, 2)), ((0,), (2,))], ids=str)
def test_outer(sa, sb):
    a, b = sample(sa, "float64", seed=11), sample(sb, "int32", seed=12)
    check(lambda m, x, y: m.outer(x, y), a, b)
    check(lambda m, x, y: m.outer(x, y), a, b, static=True)


TENSORDOT_AXES = [
    ((2, 3, 4), (3, 4, 5), 2),
    ((2, 3, 4), (4, 5), 1),
    ((2, 3), (4, 5), 0),
    ((2, 3, 4), (2, 3, 4), 3),
    ((2, 3, 4), (4, 3, 5), ([1, 2], [1, 0])),
    ((2, 3, 4), (5, 2), ([0], [1])),
    ((2, 3, 4), (5, 2), (0, 1)),
    ((2, 3, 4), (4, 3), ([-1, -2], [0, 1])),
    ((2, 3), (3, 2), ([], [])),
]


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("sa,sb,axes", TENSORDOT_AXES, ids=str)
def test_tensordot(sa, sb, axes, static):
    a, b = sample(sa, "float64", seed=13), sample(sb, "float64", seed=14)
    check(lambda m, x, y: m.tensordot(x, y, axes), a, b, static=static)
    check(lambda m, x, y: m.tensordot(x, y, axes=axes), a, b, static=static)


def test_tensordot_default_axes():
    a, b = sample((2, 3, 4), "float64", seed=15), sample((3, 4, 2), "float64", seed=16)
    check(lambda m, x, y: m.tensordot(x, y), a, b, static=True)


def test_static_shape_errors_name_both_shapes_and_the_line():
    a = st.tensor(dtype="float64", shape=(2, 3), name="a")
    b = st.tensor(dtype="float64", shape=(4, 5), name="b")
    with pytest.raises(ValueError) as info:
        st.dot(a, b)
    msg = str(info.value)
    assert "(2, 3)" in msg and "(4, 5)" in msg and "test_ops_linalg.py:" in msg
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        a @ b
    with pytest.raises(ValueError, match="batch"):
        st.tensor(dtype="float64", shape=(2, 2, 3)) @ st.tensor(dtype="float64", shape=(3, 3, 4))
    with pytest.raises(ValueError, match="scalar"):
        st.matmul(st.dscalar(), a)
    with pytest.raises(ValueError):
        st.tensordot(a, b, axes=([0], [0]))
    with pytest.raises(ValueError):
        st.tensordot(a, b, axes=3)
    with pytest.raises(ValueError, match="same length"):
        st.tensordot(a, b, axes=([0, 1], [0]))


def test_run_time_shape_mismatch_names_the_node():
    x, y = st.dmatrices("x", "y")
    f = sp.function([x, y], st.dot(x, y))
    with pytest.raises(ValueError, match=r"dot .*test_ops_linalg\.py"):
        f(np.ones((2, 3)), np.ones((2, 3)))


def test_linear_layer_expression():
    x = sample((5, 3), "float32", seed=17)
    w = sample((3, 4), "float32", seed=18)
    b = sample((4,), "float32", seed=19)
    check(lambda m, xv, wv, bv: m.tanh(m.dot(xv, wv) + bv), x, w, b)
    check(lambda m, xv, wv, bv: m.maximum(xv @ wv + bv, 0) @ wv.T, x, w, b)
