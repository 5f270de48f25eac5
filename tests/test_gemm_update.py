"""Updates ``alpha*(A @ B) + beta*W`` computed by one BLAS gemm into an early copy of W (cpu_backend.py,
_GemmUpdateStep), against numpy; and the cases that keep the matmul and the kernel."""

import numpy as np
import pytest

import sympile
import sympile.tensor as st
from sympile.runtime.blas import gemm_address
from sympile.runtime.cpu_backend import _CopyStep, _GemmUpdateStep

pytestmark = pytest.mark.skipif(gemm_address("float32") is None, reason="numpy has no OpenBLAS with 64-bit sizes")


def steps(f, kind) -> int:
    return sum(type(step) is kind for _, step, _ in f.program._plan)


def run_checked(f, make_args, want, calls=4, rtol=1e-5):
    for _ in range(calls):  # (the later calls are replayed)
        args = make_args()
        for got, ref in zip(f(*args), want(*args)):
            np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sgd_update_of_a_weight_read_earlier(dtype):
    x, w, g = (st.matrix(n, dtype=dtype) for n in "xwg")
    h = st.tanh(x @ w)
    f = sympile.function([x, w, g], [h, w - 0.1 * (x.T @ g), 0.9 * w - 0.5 * (x.T @ st.exp(g)) * 2.0])
    assert steps(f, _GemmUpdateStep) == 1 and steps(f, _CopyStep) == 1  # (one copy per earlier read of w)
    rng = np.random.default_rng(0)

    def args():
        return [rng.standard_normal(s).astype(dtype) for s in ((6, 5), (5, 4), (6, 4))]

    def want(x, w, g):
        return [np.tanh(x @ w), w - 0.1 * (x.T @ g), 0.9 * w - 0.5 * (x.T @ np.exp(g)) * 2.0]

    run_checked(f, args, want, rtol=1e-5 if dtype == "float32" else 1e-12)


def test_arguments_the_gemm_cannot_take_use_the_kernel():
    x, w, g = (st.dmatrix(n) for n in "xwg")
    f = sympile.function([x, w, g], [st.exp(w), w + x.T @ g])
    assert steps(f, _GemmUpdateStep) == 1
    rng = np.random.default_rng(1)
    cases = [
        lambda: [rng.standard_normal((6, 5)), rng.standard_normal((4, 5)).T, rng.standard_normal((6, 4))],  # W: F
        lambda: [rng.standard_normal((6, 5)), rng.standard_normal((1, 4)), rng.standard_normal((6, 4))],  # W broadcasts
        lambda: [rng.standard_normal((6, 5)), rng.standard_normal((5, 4)), rng.standard_normal((12, 8))[::2, ::-2]],
        lambda: [rng.standard_normal((6, 5)), rng.standard_normal((5, 4)), rng.standard_normal((6, 4))],
    ]
    for make in cases:
        run_checked(f, make, lambda x, w, g: [np.exp(w), w + x.T @ g], rtol=1e-12)


def test_nan_and_inf_reach_the_update_as_in_numpy():
    x, w, g = (st.dmatrix(n) for n in "xwg")
    f = sympile.function([x, w, g], [x * 2.0, w * 3.0, w - 0.5 * (x.T @ g)])
    x_, w_, g_ = np.ones((3, 2)), np.ones((2, 2)), np.ones((3, 2))
    x_[0, 0], w_[1, 1], g_[2, 1] = np.inf, np.nan, -np.inf
    for _ in range(3):
        got = f(x_, w_, g_)[2]
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(got, w_ - 0.5 * (x_.T @ g_))


def test_no_fusion_without_an_earlier_read_or_with_a_coefficient_from_data():
    x, w, g = (st.dmatrix(n) for n in "xwg")
    lr = st.dscalar("lr")
    f = sympile.function([x, w, g], w - 0.1 * (x.T @ g))  # nothing reads w before the update
    assert steps(f, _GemmUpdateStep) == 0
    f2 = sympile.function([x, w, g, lr], [w * 2.0, w - lr * (x.T @ g)])
    assert steps(f2, _GemmUpdateStep) == 0
    rng = np.random.default_rng(2)
    a, b, c = rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal((4, 2))
    for _ in range(3):
        np.testing.assert_allclose(f(a, b, c), b - 0.1 * (a.T @ c), rtol=1e-12)
        for lr_ in (0.1, 0.5):
            np.testing.assert_allclose(f2(a, b, c, lr_)[1], b - lr_ * (a.T @ c), rtol=1e-12)


def test_debugprint_says_how_the_update_runs():
    from sympile.printing import debugprint

    x, w, g = (st.fmatrix(n) for n in "xwg")
    f = sympile.function([x, w, g], [st.tanh(x @ w), w - 0.1 * (x.T @ g)])
    text = debugprint(f, file="str")
    assert "(BLAS gemm into a copy of w made after matmul)" in text
    assert text.count("(in its reader's gemm)") == 1 and text.count("(numpy fallback)") == 2
