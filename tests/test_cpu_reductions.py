"""Row kernels of the CPU backend (softmax, log_softmax, logsumexp, var, std) and fused reductions against the
numpy backend: values within a few ulp, nan/inf where numpy has them, shapes, dtypes and keepdims equal.

Many outputs go into one function per test so LLVM compiles one module.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st

FLOATS = ["float32", "float64"]


def _check(got, want, dtype: str, ulps: float = 8, scale=None) -> None:
    """``got`` equals ``want`` in shape and dtype, nan where it has nan, and within ``ulps`` ulp of ``scale``
    (the result's magnitude by default; log_softmax passes its inputs' magnitude, where values cancel)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got) & (got > 0), np.isinf(want) & (want > 0))
    np.testing.assert_array_equal(np.isinf(got) & (got < 0), np.isinf(want) & (want < 0))
    ok = np.isfinite(want)
    eps = np.finfo(dtype).eps
    ref = np.abs(want) if scale is None else scale
    with np.errstate(invalid="ignore"):  # inf - inf where both are inf (checked above)
        err = np.abs(got - want)[ok]
    np.testing.assert_array_less(err, (ulps * eps * np.maximum(ref, np.finfo(dtype).tiny))[ok] * 1.0001)


def _both(inputs, outputs, *values):
    cpu = sp.function(inputs, outputs, backend="cpu")
    ref = sp.function(inputs, outputs, backend="numpy")
    return cpu, cpu(*values), ref(*values)


@pytest.mark.parametrize("dtype", FLOATS)
def test_row_ops_match_numpy(dtype):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((37, 300)) * 6).astype(dtype)
    x = st.matrix("x", dtype)
    outs = [
        st.softmax(x, axis=-1),
        st.softmax(x, axis=0),
        st.softmax(x, axis=None),
        st.logsumexp(x, axis=1),
        st.logsumexp(x, axis=0, keepdims=True),
        st.logsumexp(x),
        st.var(x, axis=1),
        st.var(x, axis=0, ddof=1, keepdims=True),
        st.std(x, axis=None, ddof=2.5),
        st.std(x, axis=1),
    ]
    f, got, want = _both([x], outs + [st.log_softmax(x, axis=-1), st.log_softmax(x, axis=0)], a)
    assert not f.program.fallback_nodes  # every op ran natively
    for g, w in zip(got[: len(outs)], want[: len(outs)]):
        _check(g, w, dtype)
    for g, w, axis in zip(got[len(outs) :], want[len(outs) :], (1, 0)):
        # (x - max) - log(sum): the error is relative to the terms, not to their (cancelling) difference
        scale = np.abs(a - a.max(axis=axis, keepdims=True)) + np.abs(np.log(np.exp(a).sum(axis=axis, keepdims=True)))
        _check(g, w, dtype, scale=scale.astype(dtype))


@pytest.mark.parametrize("dtype", FLOATS)
def test_layouts_rank3_and_strides(dtype):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 40, 9)).astype(dtype)
    views = [base, base.transpose(2, 0, 1), base[::-2, 3:, ::-1]]
    x = st.tensor(dtype, (None, None, None), name="x")
    outs = [st.softmax(x, axis=1), st.log_softmax(x, axis=2), st.logsumexp(x, axis=(0, 2)), st.var(x, axis=(2, 1))]
    outs.append(st.std(x, axis=(0, 1), keepdims=True))
    cpu = sp.function([x], outs, backend="cpu")
    ref = sp.function([x], outs, backend="numpy")
    for v in views:
        for g, w in zip(cpu(v), ref(v)):
            _check(g, w, dtype, ulps=16, scale=np.maximum(np.abs(w), 1))


@pytest.mark.parametrize("dtype", FLOATS)
def test_special_values(dtype):
    inf, nan = np.inf, np.nan
    a = np.array(
        [
            [0.0, 1.0, nan, 2.0],  # nan: nan everywhere
            [inf, 1.0, 0.0, -1.0],  # +inf: numpy's softmax is nan, logsumexp inf
            [-inf, -inf, -inf, -inf],  # all -inf: logsumexp -inf, softmax nan
            [-inf, 0.0, 1.0, -inf],  # some -inf: exact zeros
            [1000.0, 999.0, -1000.0, 0.0],  # no overflow
            [1e-30, -1e-30, 0.0, 5e-31],
        ],
        dtype=dtype,
    )
    x = st.matrix("x", dtype)
    outs = [st.softmax(x), st.log_softmax(x), st.logsumexp(x, axis=1), st.var(x, axis=1), st.std(x, axis=1, ddof=1)]
    with np.errstate(all="ignore"):
        _, got, want = _both([x], outs, a)
    for g, w in zip(got, want):
        _check(g, w, dtype, ulps=8, scale=np.maximum(np.abs(w), 1e-30))


def test_ddof_at_least_n_and_empty():
    x = st.matrix("x", "float64")
    outs = [st.var(x, axis=1, ddof=3), st.std(x, axis=1, ddof=5), st.var(x, axis=0)]
    a = np.arange(6.0).reshape(2, 3)
    with np.errstate(all="ignore"):
        _, got, want = _both([x], outs, a)
        for g, w in zip(got, want):
            _check(g, w, "float64")
        _, got, want = _both([x], [st.logsumexp(x, axis=1), st.softmax(x)], np.zeros((0, 3)))
    for g, w in zip(got, want):
        _check(g, w, "float64")


def test_scalars_and_vectors():
    s, v = st.dscalar("s"), st.dvector("v")
    outs = [st.var(s), st.logsumexp(s), st.softmax(s), st.std(v, keepdims=True), st.log_softmax(v), st.logsumexp(v)]
    _, got, want = _both([s, v], outs, 1.5, np.arange(5.0))
    for g, w in zip(got, want):
        _check(g, w, "float64", scale=np.maximum(np.abs(w), 1))


def test_integer_input_runs_through_numpy():
    x = st.matrix("x", "int32")
    f, got, want = _both([x], [st.var(x, axis=1), st.softmax(x)], np.arange(12, dtype=np.int32).reshape(3, 4))
    assert len(f.program.fallback_nodes) == 2
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_long_rows_accuracy_and_threads(monkeypatch):
    """A 1-d var over 2**20 elements (one row: the blocked, compensated sum) and many rows split across
    threads: both as close to the exact value as numpy is."""
    monkeypatch.setenv("SYMPILE_NUM_THREADS", "2")
    rng = np.random.default_rng(2)
    v = rng.standard_normal(1 << 20) + 1e3  # a large mean: a naive one-pass formula loses digits
    rows = rng.standard_normal((512, 256)).astype("float32")
    x, m = st.vector("x", "float64"), st.matrix("m", "float32")
    f, got, want = _both([x, m], [st.var(x), st.logsumexp(x), st.softmax(m), st.std(m, axis=1)], v, rows)
    exact_mean = math.fsum(v) / v.size
    exact_var = math.fsum((v - exact_mean) ** 2) / v.size
    assert abs(got[0] - exact_var) <= abs(want[0] - exact_var) + 4 * np.finfo(float).eps * exact_var
    exact_lse = 1e3 + math.log(math.fsum(np.exp(v - 1e3)))
    assert abs(got[1] - exact_lse) <= 4 * np.finfo(float).eps * exact_lse
    _check(got[2], want[2], "float32")
    _check(got[3], want[3], "float32")


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_reductions_over_leading_axes(dtype):
    """The row-accumulating entry (reduced axes leading, kept ones contiguous): numpy's order, so plain sums are
    bit-equal to numpy's; nan propagates through max/min; broadcast inputs take the general entry."""
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((70, 9, 40)) * 4).astype(dtype)
    if dtype != "int32":
        a[5, 2, 7] = np.nan
    x = st.tensor(dtype, (None, None, None), name="x")
    row = st.tensor(dtype, (None,), name="r")
    outs = [
        st.sum(x, axis=0),
        st.mean(x, axis=(0, 1), keepdims=True),
        st.max(x, axis=0),
        st.min(x * 2, axis=(0, 1)),
        st.prod(x[:3] * 0 + 1, axis=0),
        st.sum(x * row, axis=0),  # the row broadcasts: the general entry
    ]
    f, got, want = _both([x, row], outs, a, a[0, 0])
    assert any(k.spec.reduce and "_o" in str(k.spec.symbols) for k in f.program.kernels)
    np.testing.assert_array_equal(got[0], want[0])
    if dtype == "int32":
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        return
    for g, w in zip(got[2:5], want[2:5]):  # max, min, prod of ones: exact
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
    wide = a.astype(np.longdouble)
    products = (a * a[0, 0]).astype(np.longdouble)  # rounded to the dtype, as both backends compute them
    exact = [wide.sum(0), wide.mean(axis=(0, 1), keepdims=True), None, None, None, products.sum(0)]
    for k in (0, 1, 5):  # sums: at worst as far from the exact value as numpy's (which adds row after row)
        g, w, e = got[k], want[k], exact[k]
        assert g.dtype == w.dtype and g.shape == w.shape
        ok = np.isfinite(e)
        np.testing.assert_array_equal(np.isnan(g), ~ok)
        tol = 1.5 * np.max(np.abs(w - e)[ok]) + 2 * np.finfo(dtype).eps * np.max(np.abs(e)[ok])
        assert np.max(np.abs(g - e)[ok]) <= tol


@pytest.mark.parametrize("dtype", FLOATS)
def test_matmul_epilogue_in_place(dtype):
    """bias + activation after a matmul write over the product; a product also returned (or read twice) is
    left alone."""
    rng = np.random.default_rng(4)
    A, B, c = (rng.standard_normal(s).astype(dtype) for s in ((33, 20), (20, 17), (17,)))
    a, b, bias = st.matrix("a", dtype), st.matrix("b", dtype), st.vector("c", dtype)
    f = sp.function([a, b, bias], st.tanh(a @ b + bias))
    assert any(getattr(s, "reuse", None) is not None for s in f.program._steps.values())
    np.testing.assert_allclose(f(A, B, c), np.tanh(A @ B + c), rtol=8 * np.finfo(dtype).eps, atol=0)
    prod = a @ b
    outs = [prod, st.tanh(prod + bias), st.exp(a @ b.T.T) * 2, st.sum(prod, axis=0)]
    _, got, want = _both([a, b, bias], outs, A, B, c)
    for g, w in zip(got, want):
        _check(g, w, dtype, ulps=8, scale=np.maximum(np.abs(w), 1))


def test_mlp_step_gradient_matches_numpy():
    """One SGD step of a small MLP (tanh, log_softmax cross-entropy) with its gradient: matmul epilogues in place
    (their products also read by the gradient's shape ops), bias gradients as column sums, row kernels."""
    rng = np.random.default_rng(5)
    data = [rng.standard_normal(s).astype("float32") for s in ((16, 12), (16, 5), (12, 8), (8,), (8, 5), (5,))]
    X, Y, W1, W2 = (st.fmatrix(n) for n in ("X", "Y", "W1", "W2"))
    b1, b2 = st.fvector("b1"), st.fvector("b2")
    h = st.tanh(X @ W1 + b1)
    loss = st.mean(-st.sum(Y * st.log_softmax(h @ W2 + b2, axis=1), axis=1))
    params = [W1, b1, W2, b2]
    outs = [loss] + [p - 0.1 * g for p, g in zip(params, sp.grad(loss, params))]
    f, got, want = _both([X, Y, *params], outs, *data)
    assert any(getattr(s, "reuse", None) is not None for s in f.program._steps.values())
    for g, w in zip(got, want):
        _check(g, w, "float32", ulps=64, scale=np.maximum(np.abs(w), 1))


def test_shape_values_kept_only_while_shapes_stay():
    """Values computed from shapes (a mean's 1/n, a gradient's target shapes) are kept between calls: calls with
    new shapes, alternating, and from several threads at once, all get their own shapes' results."""
    from concurrent.futures import ThreadPoolExecutor

    x, w = st.fmatrix("x"), st.fvector("w")
    loss = st.mean(st.tanh(x * w) ** 2)
    outs = [loss, *sp.grad(loss, [x, w]), st.ones_like(x).sum() / x.shape[0]]
    cpu = sp.function([x, w], outs, backend="cpu")
    ref = sp.function([x, w], outs, backend="numpy")
    assert any(type(s).__name__ == "_ShapeMemoStep" for s in cpu.program._steps.values())
    rng = np.random.default_rng(6)
    cases = [(rng.standard_normal((r, c)).astype("float32"), rng.standard_normal(c).astype("float32"))
             for r, c in ((16, 5), (7, 5), (16, 5), (3, 9), (7, 5))]  # fmt: skip
    expected = [ref(*case) for case in cases]
    for case, want in zip(cases, expected):
        for g, w_ in zip(cpu(*case), want):
            _check(g, w_, "float32", ulps=16, scale=np.maximum(np.abs(w_), 1))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda k: (k, cpu(*cases[k % 5])), range(60)))
    for k, got in results:
        for g, w_ in zip(got, expected[k % 5]):
            _check(g, w_, "float32", ulps=16, scale=np.maximum(np.abs(w_), 1))
