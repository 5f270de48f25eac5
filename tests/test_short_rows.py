"""Short rows on the CPU backend against numpy: row ops (softmax, log_softmax, logsumexp, var, std) and broadcast
elementwise kernels over rows of 1 to a few hundred elements, the shapes of an MLP's logits.

The sizes sit on both sides of the thresholds a short-row path would use (rows of up to 64 columns taken 64 at
a time; strided rows below 128 elements packed in blocks of 1024): such a path was tried and measured (a row
kernel 5x faster on (256, 10), but twice the compile time: design.md), and these tests stay for the next one.

Row ops: cols 1..40 and around 64, rows 1..70, float32 and float64, with +-inf and nan inside rows,
non-contiguous inputs and rows split across threads. Elementwise: inputs read in place, broadcast rows (a bias),
columns (``(n, 1)``), zero-strided and negative-strided views, transposes, rank 3, ints and bools, sizes around
the block length, and threads.
"""

from __future__ import annotations

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st

GROUP = 64  # rows taken at a time by a grouped row kernel
SHORT_COLS = {"float32": 64, "float64": 63}  # the longest row such a kernel would take
SHORT_ROW, SHORT_BLOCK = 128, 1024  # strided rows below SHORT_ROW packed into blocks of SHORT_BLOCK elements

FLOATS = ["float32", "float64"]
ROWS = [1, 2, 15, GROUP - 1, GROUP, GROUP + 1, 70]
COLS = [*range(1, 41), 47, 48, 49, 63, 64, 65]


def _check(got, want, dtype: str, ulps: float, scale) -> None:
    """Shape, dtype, nan and inf positions equal; finite values within ``ulps`` ulp of ``scale``."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    ok = np.isfinite(want)
    with np.errstate(invalid="ignore"):
        err = np.abs(got.astype(float) - want.astype(float))[ok]
    bound = ulps * np.finfo(dtype).eps * np.maximum(np.broadcast_to(scale, want.shape), np.finfo(dtype).tiny)[ok]
    np.testing.assert_array_less(err, bound * 1.0001 + 0)


def _row_functions(dtype):
    x = st.matrix("x", dtype)
    outs = [
        st.softmax(x, axis=1),
        st.log_softmax(x, axis=1),
        st.logsumexp(x, axis=1),
        st.var(x, axis=1),
        st.std(x, axis=1, ddof=1),
    ]
    cpu = sp.function([x], outs, backend="cpu")
    assert not cpu.program.fallback_nodes
    return cpu, sp.function([x], outs, backend="numpy")


def _compare_rows(cpu, ref, a, dtype, ulps=16):
    with np.errstate(all="ignore"):
        got, want = cpu(a), ref(a)
    for k, (g, w) in enumerate(zip(got, want)):
        if k == 1:  # log_softmax: (x - max) - log(sum), the error relative to the terms, not their difference
            with np.errstate(all="ignore"):
                m = np.nanmax(np.where(np.isfinite(a), a, np.nan), axis=1, keepdims=True) if a.size else 0
                scale = np.abs(a - np.nan_to_num(m)) + np.abs(np.nan_to_num(w - a + m)) + 1
            scale = np.where(np.isfinite(scale), scale, 1)
        elif k >= 3:  # var, std (compared squared): relative to the row's mean square, where numpy's also errs
            if k == 4:
                g, w = g * g, w * w
            with np.errstate(all="ignore"):
                scale = np.nan_to_num(np.mean(a.astype(float) ** 2, axis=1), posinf=0) if a.size else 0
        else:  # softmax; logsumexp = max + log(sum): relative to the larger term
            scale = np.maximum(np.abs(np.nan_to_num(w, posinf=0, neginf=0)), 1e-30)
            if k == 2 and a.size:
                with np.errstate(all="ignore"):
                    scale = np.maximum(scale, np.nan_to_num(np.abs(a).max(axis=1), posinf=0))
        _check(g, w, dtype, ulps, scale)


@pytest.mark.parametrize("dtype", FLOATS)
def test_row_ops_all_short_shapes(dtype):
    cpu, ref = _row_functions(dtype)
    rng = np.random.default_rng(0)
    for cols in COLS:
        for rows in ROWS:
            a = (rng.standard_normal((rows, cols)) * 4).astype(dtype)
            _compare_rows(cpu, ref, a, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_row_ops_special_values(dtype):
    cpu, ref = _row_functions(dtype)
    rng = np.random.default_rng(1)
    for cols in (1, 2, 5, 10, 16, 17, 40, SHORT_COLS[dtype], SHORT_COLS[dtype] + 1):
        for rows in (3, GROUP + 3):
            a = (rng.standard_normal((rows, cols)) * 3).astype(dtype)
            a[0, rng.integers(cols)] = np.nan  # nan: nan through the whole row
            a[1, rng.integers(cols)] = np.inf  # +inf: softmax nan (numpy's inf - inf), logsumexp inf
            a[2] = -np.inf  # all -inf: logsumexp -inf, softmax nan
            if cols > 1:
                a[rows - 1, 0] = -np.inf  # some -inf: exact zeros
                a[rows - 2, cols - 1] = 1e30 if dtype == "float32" else 1e300  # no overflow
            _compare_rows(cpu, ref, a, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_row_ops_layouts_and_threads(dtype, monkeypatch):
    """Non-contiguous inputs (copied to rows by the runtime) and many short rows split across two threads, so
    that a thread's first row is not a multiple of GROUP."""
    cpu, ref = _row_functions(dtype)
    rng = np.random.default_rng(2)
    base = rng.standard_normal((90, 24)).astype(dtype)
    for view in (base.T, base[::-3, ::2], base[5:70, 3:13]):
        _compare_rows(cpu, ref, view, dtype)
    monkeypatch.setenv("SYMPILE_NUM_THREADS", "2")
    big = (rng.standard_normal((60_001, 11)) * 3).astype(dtype)  # above the runtime's threading threshold
    _compare_rows(cpu, ref, big, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_short_row_sums_as_accurate_as_numpy(dtype):
    """logsumexp and var of short rows against exact values (float64 / long double of the same inputs): within
    numpy's own error plus 2 ulp (the row sums run in float64, compensated for float64 data)."""
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((200, 37)) * 10).astype(dtype)
    x = st.matrix("x", dtype)
    outs = [st.logsumexp(x, axis=1), st.var(x, axis=1)]
    got = sp.function([x], outs, backend="cpu")(a)
    want = sp.function([x], outs, backend="numpy")(a)
    wide = a.astype(np.longdouble)
    m = wide.max(axis=1, keepdims=True)
    exact = [(m + np.log(np.exp(wide - m).sum(axis=1, keepdims=True)))[:, 0], wide.var(axis=1)]
    for g, w, e in zip(got, want, exact):
        ulp = np.finfo(dtype).eps * np.abs(e)
        assert np.all(np.abs(g - e) <= np.abs(w - e) + 2 * ulp)


# --- elementwise: the strided entry over short rows ------------------------------------------------------------
def _close(got, want, scale=None):
    """Equal for ints and bools; floats within 8 ulp of ``scale`` (the terms' magnitude where they cancel)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    if got.dtype.kind == "f":
        scale = np.abs(want) if scale is None else scale
        assert np.all(np.abs(got - want) <= 8 * np.finfo(got.dtype).eps * scale)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", FLOATS)
def test_broadcast_short_rows(dtype):
    """``exp(a) * b - c`` with b a column, ``a + bias``, over short and long rows (around SHORT_ROW) and row
    counts that take several blocks (SHORT_BLOCK elements), with contiguous, reversed, zero-strided and
    transposed operands."""
    x, y, z = (st.matrix(n, dtype) for n in "xyz")
    v = st.vector("v", dtype)
    f = sp.function([x, y, z], st.exp(x) * y - z, backend="cpu")
    g = sp.function([x, v], x + v, backend="cpu")
    rng = np.random.default_rng(4)
    for cols in (1, 2, 7, 10, 16, 33, SHORT_ROW - 1, SHORT_ROW, SHORT_ROW + 1):
        for rows in (1, 3, SHORT_BLOCK // cols + 1, 2 * SHORT_BLOCK // cols + 5):
            a = rng.standard_normal((rows, cols)).astype(dtype)
            b = rng.standard_normal((rows, 1)).astype(dtype)
            c = rng.standard_normal((rows, cols)).astype(dtype)
            bias = rng.standard_normal(cols).astype(dtype)
            wide = rng.standard_normal((rows, 2 * cols)).astype(dtype)
            cases = [
                (a, b, c),
                (a[::-1], b[::-1], c),  # negative row strides
                (a[:, ::-1], b, c[::-1, ::-1]),  # negative inner strides: copied row by row
                (a, np.broadcast_to(b[:1], (rows, 1)), c),  # a zero-strided column
                (wide[:, ::2], b, wide[:, 1::2]),  # inner stride 2
                (a, b.T.reshape(rows, 1), np.asfortranarray(c)),  # a transposed operand
                (a, np.broadcast_to(bias, (rows, cols)), c),  # rows of one offset
            ]
            for p, q, r in cases:
                _close(f(p, q, r), np.exp(p) * q - r, np.abs(np.exp(p) * q) + np.abs(r))
            for p, q in (
                (a, bias),
                (a[::-1], bias[::-1]),
                (c.T.copy().T, bias),
                (a, np.broadcast_to(bias[:1], (cols,))),
            ):
                _close(g(p, q), p + q, np.abs(p) + np.abs(q))


def test_rank3_ints_bools_and_scalars():
    """Rank 3 with broadcasts in the middle axes (rows walked across two axes), int and bool dtypes (other
    element sizes in the splat stores), and a runtime scalar."""
    rng = np.random.default_rng(5)
    a3 = st.tensor("int32", (None, None, None), name="a")
    m3 = st.tensor("bool", (None, None, None), name="m")
    s = st.scalar("s", "int32")
    f = sp.function([a3, m3, s], st.where(m3, a3 * s, a3 - 1), backend="cpu")
    h = st.tensor("int8", (None, None, None), name="h")
    k = sp.function([h, a3], h + a3, backend="cpu")
    for shape in ((4, 5, 3), (3, 70, 9), (2, 1, 30), (5, 9, 130)):
        a = rng.integers(-100, 100, shape).astype(np.int32)
        mask = rng.integers(0, 2, (shape[0], 1, shape[2])).astype(bool)
        col = rng.integers(-100, 100, (shape[0], shape[1], 1)).astype(np.int32)
        _close(f(a, mask, np.int32(3)), np.where(mask, a * 3, a - 1))
        _close(
            f(a[:, ::-1, ::-1], mask[::-1], np.int32(-2)),
            np.where(mask[::-1], a[:, ::-1, ::-1] * -2, a[:, ::-1, ::-1] - 1),
        )
        _close(f(np.broadcast_to(col, shape), mask, np.int32(5)), np.where(mask, col * 5, col - 1))
        small = rng.integers(-50, 50, (1, shape[1], 1)).astype(np.int8)
        _close(k(small, a), small + a)
        _close(k(np.broadcast_to(small, shape)[:, ::-1], a.transpose(0, 1, 2)), small[:, ::-1] + a)


def test_broadcast_short_rows_threads(monkeypatch):
    """Rows split across threads: a thread's rows start mid-array (its first row's offsets, the fixed rows'
    buffer filled from its own first row)."""
    monkeypatch.setenv("SYMPILE_NUM_THREADS", "2")
    rng = np.random.default_rng(6)
    x, y, z = (st.matrix(n, "float32") for n in "xyz")
    v = st.vector("v", "float32")
    f = sp.function([x, y, z], st.exp(x) * y - z, backend="cpu")
    g = sp.function([x, v], x * v, backend="cpu")
    rows, cols = 60_001, 10
    a = rng.standard_normal((rows, cols)).astype("float32")
    b = rng.standard_normal((rows, 1)).astype("float32")
    c = rng.standard_normal((rows, cols)).astype("float32")
    bias = rng.standard_normal(cols).astype("float32")
    _close(f(a, b, c), np.exp(a) * b - c, np.abs(np.exp(a) * b) + np.abs(c))
    p, q, r = a[::-1], b[::-1], c[:, ::-1]
    _close(f(p, q, r), np.exp(p) * q - r, np.abs(np.exp(p) * q) + np.abs(r))
    _close(g(a, bias), a * bias)
    _close(g(a[::-1], bias[::-1]), a[::-1] * bias[::-1])
