"""The Theano tutorial basics, end to end through the numpy backend."""

import numpy as np

import sympile as sp
import sympile.tensor as st


def test_add_scalars_and_matrices():
    x, y = st.dscalars("x", "y")
    f = sp.function([x, y], x + y)
    assert f(2, 3) == 5.0
    a, b = st.dmatrices("a", "b")
    g = sp.function([a, b], a + b)
    np.testing.assert_array_equal(g([[1, 2], [3, 4]], [[10, 20], [30, 40]]), [[11, 22], [33, 44]])


def test_logistic_and_several_outputs():
    x = st.dmatrix("x")
    s = 1 / (1 + st.exp(-x))
    diff = x - 1
    f = sp.function([x], [s, diff, abs(diff)])
    v = np.array([[0.0, 1.0], [-1.0, -2.0]])
    out = f(v)
    np.testing.assert_allclose(out[0], 1 / (1 + np.exp(-v)))
    np.testing.assert_array_equal(out[2], np.abs(v - 1))


def test_shared_accumulator_and_givens():
    state = sp.shared(0, name="state")
    inc = st.iscalar("inc")
    acc = sp.function([inc], state, updates=[(state, state + inc)])
    assert acc(1) == 0 and acc(300) == 1
    assert state.get_value() == 301
    fn_of_state = state * 2 + inc
    foo = st.scalar(dtype=state.dtype)
    skip = sp.function([inc, foo], fn_of_state, givens=[(state, foo)])
    assert skip(1, 3) == 7
    assert state.get_value() == 301
