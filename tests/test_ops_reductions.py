"""Reductions against numpy: sum, prod, mean, var, std, max, min, argmax, argmin, all, any, logsumexp.

axis as an int, a negative int, a tuple or None, with and without keepdims, every dtype family, empty arrays
and non-contiguous inputs. Values are compared exactly (sympile runs numpy's own reduction), except logsumexp,
which is checked against an extended-precision reference.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracle import ALL_DTYPES, check, layouts, run, sample, symbolic_like

import sympile as sp
import sympile.tensor as st

# numpy warns (RuntimeWarning) for ddof >= n and means of empty slices; its values (nan, inf) are what we check
pytestmark = [
    pytest.mark.filterwarnings("ignore:Degrees of freedom:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning"),
]

PLAIN = ["sum", "prod", "mean", "max", "min", "all", "any"]
AXES = [None, 0, 1, -1, -3, (0, 2), (-1, 0), (0, 1, 2), ()]
LSE_RTOL = {"float16": 2e-3, "float32": 2e-6, "float64": 4e-15}


def data(dtype, shape=(2, 3, 4), seed=0):
    return sample(shape, dtype, seed=seed)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("name", PLAIN)
def test_reduction_matches_numpy(name, dtype, axis, keepdims):
    x = data(dtype, seed=1)
    check(lambda m, v: getattr(m, name)(v, axis=axis, keepdims=keepdims), x)
    check(lambda m, v: getattr(m, name)(v, axis=axis, keepdims=keepdims), x, static=True)


@pytest.mark.parametrize("ddof", [0, 1, 2, 0.5])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 1, -1, (0, 2)], ids=str)
@pytest.mark.parametrize("dtype", ["bool", "int8", "int64", "uint8", "float32", "float64"])
@pytest.mark.parametrize("name", ["var", "std"])
def test_var_std_with_ddof(name, dtype, axis, keepdims, ddof):
    x = data(dtype, seed=2)
    check(lambda m, v: getattr(m, name)(v, axis=axis, ddof=ddof, keepdims=keepdims), x, static=True)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, -3], ids=str)
@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_argmax_argmin(name, dtype, axis, keepdims):
    x = data(dtype, seed=3)
    check(lambda m, v: getattr(m, name)(v, axis=axis, keepdims=keepdims), x, static=True)


def test_argmax_ties_and_nan_follow_numpy():
    x = np.array([[1.0, 3.0, 3.0, np.nan], [2.0, 2.0, -1.0, -1.0]])
    for name in ("argmax", "argmin"):
        check(lambda m, v, name=name: getattr(m, name)(v, axis=1), x)
        check(lambda m, v, name=name: getattr(m, name)(v), x)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_argmax_with_tuple_axis_raises_type_error_like_numpy(name):
    x = st.dtensor3("x")
    with pytest.raises(TypeError):
        getattr(np, name)(np.ones((2, 2, 2)), axis=(0, 1))
    with pytest.raises(TypeError, match="axis"):
        getattr(st, name)(x, axis=(0, 1))


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2)], ids=str)
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_logsumexp(dtype, axis, keepdims):
    x = data(dtype, seed=4)
    if np.dtype(dtype).kind == "f":
        x = x * 100  # values whose exp overflows: the max must be taken out first
    out_dtype = np.exp(np.ones((), dtype)).dtype.name
    # m + log(sum(exp(x - m))) is accurate relative to the inputs' magnitude, not to a result near 0
    atol = LSE_RTOL[out_dtype] * float(np.max(np.abs(x)))
    tol = {"rtol": LSE_RTOL[out_dtype], "atol": atol}
    check(lambda m, v: m.logsumexp(v, axis=axis, keepdims=keepdims), x, static=True, **tol)


def test_logsumexp_infinities_and_nan():
    x = np.array(
        [[-np.inf, -np.inf], [np.inf, 1.0], [np.nan, 1.0], [-np.inf, 0.0], [1000.0, 1000.0], [-1000.0, -1000.0]]
    )
    got = check(lambda m, v: m.logsumexp(v, axis=1), x, rtol=4e-15)
    assert got[0] == -np.inf and got[1] == np.inf and np.isnan(got[2]) and got[3] == 0.0
    assert st.nnet.logsumexp is st.logsumexp


@pytest.mark.parametrize("name", PLAIN + ["var", "std", "logsumexp"])
def test_reductions_of_empty_arrays(name):
    x = np.zeros((0, 3))
    with np.errstate(all="ignore"):
        if name in ("max", "min"):
            check(lambda m, v, name=name: getattr(m, name)(v, axis=1), x)  # reducing the non-empty axis is fine
            f = sp.function([xs := st.dmatrix("x")], getattr(st, name)(xs, axis=0))
            with pytest.raises(ValueError, match="zero-size"):
                f(x)
            return
        rtol = 1e-15 if name == "logsumexp" else 0.0
        check(lambda m, v: getattr(m, name)(v, axis=0), x, rtol=rtol)
        check(lambda m, v: getattr(m, name)(v, axis=1), x, rtol=rtol)
        check(lambda m, v: getattr(m, name)(v), x, rtol=rtol)


@pytest.mark.parametrize("layout", ["C", "F", "strided", "negative"])
def test_reductions_of_non_contiguous_inputs(layout):
    x = layouts(data("float64", seed=5))[layout]
    check(lambda m, v: (m.sum(v, axis=1), m.mean(v, axis=(0, 2)), m.max(v, axis=-1), m.argmin(v, axis=0)), x)
    check(lambda m, v: (m.var(v, axis=1, ddof=1), m.std(v), m.prod(v, axis=2, keepdims=True)), x)
    check(lambda m, v: m.logsumexp(v, axis=1), x, rtol=4e-15)
    check(lambda m, v: m.sum(v.T, axis=0), x)


def test_method_forms():
    x = data("float32", seed=6)
    check(lambda m, v: (v.sum(), v.sum(axis=1), v.prod(axis=-1, keepdims=True), v.mean(axis=(0, 1))), x)
    check(lambda m, v: (v.max(axis=0), v.min(), v.argmax(axis=1), v.argmin(), v.var(ddof=1), v.std(axis=2)), x)
    b = data("bool", seed=7)
    check(lambda m, v: (v.all(axis=0), v.any(axis=-1, keepdims=True), v.all(), v.any()), b)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "float32", "float64", "int32"])
@pytest.mark.parametrize("name", ["sum", "prod", "mean"])
def test_dtype_argument(name, dtype):
    x = data("int16", seed=8)
    check(lambda m, v: getattr(m, name)(v, axis=1, dtype=dtype), x)


def test_sum_of_small_ints_widens_like_numpy():
    x = np.full((4, 100), 100, dtype="int8")
    got = check(lambda m, v: m.sum(v, axis=1), x)
    assert got.dtype == np.int64 and got[0] == 10000
    u = np.full(300, 255, dtype="uint8")
    assert check(lambda m, v: m.sum(v), u).dtype == np.uint64


def test_reductions_of_scalars():
    for name in PLAIN + ["argmax", "logsumexp"]:
        check(lambda m, v, name=name: getattr(m, name)(v), np.float64(2.5), rtol=1e-15 if name == "logsumexp" else 0)


def test_bad_axis_raises_at_build_time():
    x = symbolic_like(np.ones((2, 3)))
    with pytest.raises(ValueError, match="out of bounds"):
        st.sum(x, axis=2)
    with pytest.raises(ValueError, match="out of bounds"):
        st.max(x, axis=-3)
    with pytest.raises(ValueError, match="repeated"):
        st.sum(x, axis=(1, -1))
    with pytest.raises(TypeError, match="axis"):
        st.mean(x, axis=1.0)


def test_reduction_results_feed_further_ops():
    x = data("float64", seed=9)
    check(lambda m, v: v - m.mean(v, axis=1, keepdims=True), x)
    check(lambda m, v: (v - m.max(v, axis=-1, keepdims=True)) / m.std(v, axis=-1, keepdims=True), x)
    _, got = run(lambda v: st.sum(v, axis=(0, 2)) * 2.0, x)
    np.testing.assert_array_equal(got, np.sum(x, axis=(0, 2)) * 2.0)


# --- nn: softmax, log_softmax (along an axis, computed stably) -------------------------------------------------
@pytest.mark.parametrize("axis", [-1, 0, 1, None], ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int8", "int64", "bool"])
def test_softmax_and_log_softmax(dtype, axis):
    x = data(dtype, seed=10)
    if np.dtype(dtype).kind == "f":
        x = x * 300  # exp overflows without the shift by the max
    out_dtype = np.exp(np.ones((), dtype)).dtype.name
    rtol = LSE_RTOL[out_dtype]
    scale = max(1.0, float(np.max(np.abs(x))))
    # exp(x - max) inherits the absolute rounding error of x - max as a relative error: it scales with |x|
    check(lambda m, v: m.softmax(v, axis=axis), x, rtol=rtol * scale, atol=1e-300, static=True)
    atol = rtol * scale  # log_softmax is accurate relative to the inputs' magnitude
    check(lambda m, v: m.log_softmax(v, axis=axis), x, rtol=rtol, atol=atol, static=True)


def test_softmax_default_axis_and_aliases():
    x = data("float64", shape=(3, 5), seed=11)
    check(lambda m, v: m.softmax(v), x, rtol=1e-15)
    got = check(lambda m, v: m.softmax(v, axis=1), x, rtol=1e-15)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-15)
    assert st.nnet.softmax is st.softmax and st.nnet.log_softmax is st.log_softmax
    check(lambda m, v: m.softmax(v), np.array([1000.0, 0.0, -1000.0]), rtol=1e-15, atol=1e-300)
    check(lambda m, v: m.log_softmax(v), np.array([1000.0, 0.0, -1000.0]), rtol=1e-15)


def test_softmax_bad_axis():
    with pytest.raises(ValueError, match="out of bounds"):
        st.softmax(st.dmatrix(), axis=2)
    with pytest.raises(TypeError, match="axis"):
        st.log_softmax(st.dmatrix(), axis=(0, 1))


def test_relu():
    x = data("float64", seed=12)
    check(lambda m, v: m.relu(v), x, static=True)
    check(lambda m, v: st.relu(v, 0.1) if m is st else np.where(v > 0, v, 0.1 * v), x)
    check(lambda m, v: m.relu(v), data("int16", seed=13))
    assert st.nnet.relu is st.relu
