"""Regression tests for bugs found in review: each compares with numpy run directly (or checks an error message)."""

from __future__ import annotations

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st

BACKENDS = ["numpy", "cpu"]
pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")


def _bits(a) -> np.ndarray:
    """The raw bits, so +0.0 and -0.0 compare unequal."""
    return np.asarray(a).view(np.uint64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_plus_zero_keeps_numpy_sign_of_zero(backend):
    # x + 0.0 -> x was applied for floats, but numpy's -0.0 + 0.0 is +0.0
    x = st.dvector("x")
    data = np.array([-0.0, 0.0, -1.5, np.inf])
    f = sp.function([x], [x + 0.0, 0.0 + x, x - (-0.0), x + (-0.0), x - 0.0], backend=backend)
    wants = [data + 0.0, 0.0 + data, data - (-0.0), data + (-0.0), data - 0.0]
    for got, want in zip(f(data), wants):
        np.testing.assert_array_equal(_bits(got), _bits(want))


def test_plus_negative_zero_still_simplified():
    x = st.dvector("x")
    f = sp.function([x], [x + (-0.0), x - 0.0], backend="numpy")
    assert [r.rule for r in f.rewrites].count("add_zero") == 1
    assert [r.rule for r in f.rewrites].count("sub_zero") == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_matrix_subclass_argument_follows_ndarray_semantics(backend):
    # np.matrix arguments reached the numpy reference ops as matrices: reductions failed (no keepdims) or kept 2-d
    m = st.dmatrix("m")
    data = np.matrix([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    f = sp.function([m], [m.sum(axis=0) + 1, m * m, m.max(axis=1)], backend=backend)
    plain = np.asarray(data)
    for got, want in zip(f(data), [plain.sum(axis=0) + 1, plain * plain, plain.max(axis=1)]):
        assert type(got) is np.ndarray
        np.testing.assert_array_equal(got, want)


def test_matrix_subclass_shared_borrowed():
    data = np.matrix(np.ones((2, 3)))
    w = sp.shared(data, name="w", borrow=True)
    f = sp.function([], w.sum(axis=0), backend="numpy")
    np.testing.assert_array_equal(f(), np.full(3, 2.0))


def test_matrix_subclass_shared_set_value():
    w = sp.shared(np.zeros((2, 2)), name="w")
    w.set_value(np.matrix(np.ones((2, 2))))
    f = sp.function([], w.sum(axis=1), backend="numpy")
    np.testing.assert_array_equal(f(), np.full(2, 2.0))


def test_float_array_index_error_names_type_and_line():
    x = st.dvector("x")
    with pytest.raises(TypeError, match=r"integer or boolean type, got float64\[\?\] \(at .*test_review_regressions"):
        x[x]


def test_bad_transpose_error_names_node_and_line():
    m = st.dmatrix("m")
    with pytest.raises(ValueError, match=r"transpose\(float64\[\?,\?\]\): axes \(0, 0\).*test_review_regressions"):
        m.transpose(0, 0)


def test_float16_mean_split_across_threads(monkeypatch):
    monkeypatch.setenv("SYMPILE_NUM_THREADS", "2")
    h = st.tensor("float16", shape=(None,), name="h")
    data = np.full(1 << 20, 2, np.float16)  # two parts of 524288 elements
    got = sp.function([h], h.mean(), backend="cpu")(data)
    np.testing.assert_array_equal(got, data.mean())
