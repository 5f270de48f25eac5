"""The CPU backend's strided entry (``{name}_s``) against numpy: broadcast rows and columns, scalars, 0-strided
views, negative strides, transposes, int and float dtypes, sizes around its block length (STRIDED_BLOCK).

The strided entry reads unit-stride inputs in place, fills a buffer once per row for inner-stride-0 ones and
gathers other strides per block; each path and their mixes are checked here, plus rows split across threads
(a row range that starts mid-array) and the error word (a negative integer power) through the strided path.
"""

from __future__ import annotations

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st
from sympile.compiler.llvm.kernels import STRIDED_BLOCK

FLOATS = ["float32", "float64"]
INTS = ["bool", "int8", "uint8", "int32", "int64"]
SIZES = [1, 3, 17, STRIDED_BLOCK - 1, STRIDED_BLOCK + 1, 1000]


def _expr(dtype, x, y, z):
    """A composite with a transcendental step for floats (a scalar remainder would show), plain ints (and, or for
    bool) otherwise."""
    return st.tanh(x * y + z) if dtype in FLOATS else x * y + z


def _numpy(dtype, x, y, z):
    with np.errstate(over="ignore"):
        return np.tanh(x * y + z) if dtype in FLOATS else x * y + z


def _data(rng, dtype, shape):
    if dtype in FLOATS:
        return rng.standard_normal(shape).astype(dtype)
    if dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -50), min(info.max, 50), shape, endpoint=True).astype(dtype)


def _check(got, want, dtype, what):
    assert got.shape == want.shape, what
    assert got.dtype == want.dtype, what
    if dtype in FLOATS:
        np.testing.assert_allclose(got, want, rtol=4e-6 if dtype == "float32" else 1e-14, atol=1e-7, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.fixture(scope="module")
def rank2():
    """One compiled function per dtype, rank-2 inputs of unknown shape (fed every layout below)."""
    fns = {}
    for dtype in FLOATS + INTS:
        x, y, z = (st.tensor(dtype, ndim=2) for _ in range(3))
        fns[dtype] = sp.function([x, y, z], _expr(dtype, x, y, z), backend="cpu")
    return fns


def _layouts(rng, dtype, n, m):
    """(x, y, z) argument triples of broadcast shape (n, m) in many layouts."""
    full = _data(rng, dtype, (n, m))
    row, col, one = _data(rng, dtype, (1, m)), _data(rng, dtype, (n, 1)), _data(rng, dtype, (1, 1))
    big = _data(rng, dtype, (2 * (n + m) + 3, 2 * (n + m) + 3))
    return {
        "bias row": (full, _data(rng, dtype, (n, m)), row),
        "row and column": (full, col, row),
        "column only": (col, full, col),
        "scalars": (full, one, one),
        "all broadcast": (col, row, one),
        "0-strided view": (full, np.broadcast_to(row, (n, m)), np.broadcast_to(col, (n, m))),
        "negative strides": (full[::-1, ::-1], col[::-1], row[:, ::-1]),
        "transposed": (big[:m, :n].T, full, row),
        "step 2": (big[: 2 * m : 2, : 2 * n : 2].T, big[1 : n + 1, 2 : m + 2], col),
    }


@pytest.mark.parametrize("dtype", FLOATS + INTS)
def test_broadcast_layouts_against_numpy(rank2, dtype):
    rng = np.random.default_rng(abs(hash(dtype)) % 2**32)
    f = rank2[dtype]
    for n, m in [(1, 1), (3, 1), (1, 17), (5, 3), (4, STRIDED_BLOCK - 1), (3, STRIDED_BLOCK + 1), (2, 1000)]:
        for name, args in _layouts(rng, dtype, n, m).items():
            _check(f(*args), _numpy(dtype, *args), dtype, f"{dtype} {name} {(n, m)}")


@pytest.mark.parametrize("size", SIZES)
def test_rank1_negative_stride_and_runtime_scalar(size):
    x, y = st.tensor("float32", ndim=1), st.tensor("float32", ndim=1)
    f = sp.function([x, y], st.tanh(x - y), backend="cpu")
    rng = np.random.default_rng(size)
    a = rng.standard_normal(2 * size).astype(np.float32)
    b = rng.standard_normal(1).astype(np.float32)
    for args in [(a[::-2], b), (a[::2], a[1::2]), (b, a[::-1]), (np.broadcast_to(b, (size,)), a[:size])]:
        _check(f(*args), np.tanh(args[0] - args[1]), "float32", f"rank1 {size} {[v.strides for v in args]}")


def test_zero_dim_input_and_static_scalar():
    x, s = st.tensor("float64", ndim=2), st.tensor("float64", ndim=0)
    f = sp.function([x, s], st.tanh(x * s + 0.5), backend="cpu")
    rng = np.random.default_rng(3)
    for shape in [(1, 1), (7, 3), (3, STRIDED_BLOCK + 5)]:
        a = rng.standard_normal(shape)
        for view in (a, a.T, a[::-1]):
            _check(f(view, np.float64(1.5)), np.tanh(view * 1.5 + 0.5), "float64", f"0-d {shape}")


def test_rank3_rows_carry_over_axes():
    x, y = st.tensor("float32", ndim=3), st.tensor("float32", ndim=3)
    f = sp.function([x, y], st.tanh(x) * y, backend="cpu")
    rng = np.random.default_rng(5)
    a = rng.standard_normal((4, 5, 19)).astype(np.float32)
    cases = [
        (a, rng.standard_normal((1, 5, 1)).astype(np.float32)),
        (a, rng.standard_normal((4, 1, 19)).astype(np.float32)),
        (a.transpose(1, 0, 2), rng.standard_normal((5, 1, 1)).astype(np.float32)),
        (a[:, ::-1, ::2], rng.standard_normal((4, 5, 1)).astype(np.float32)[::-1]),
        (a.transpose(2, 1, 0), rng.standard_normal((19, 1, 4)).astype(np.float32)),
    ]
    for args in cases:
        _check(f(*args), np.tanh(args[0]) * args[1], "float32", f"rank3 {[v.strides for v in args]}")


def test_rows_split_across_threads_start_mid_array(monkeypatch):
    # over 2**19 elements the rows are split between threads: each range unravels its first row itself
    monkeypatch.setenv("SYMPILE_NUM_THREADS", "3")
    x, y, z = (st.tensor("float32", ndim=3) for _ in range(3))
    f = sp.function([x, y, z], st.tanh(x * y + z), backend="cpu")
    rng = np.random.default_rng(7)
    a = rng.standard_normal((7, 300, 257)).astype(np.float32)
    col = rng.standard_normal((7, 300, 1)).astype(np.float32)
    mid = rng.standard_normal((1, 300, 1)).astype(np.float32)
    bias = rng.standard_normal((1, 1, 257)).astype(np.float32)
    for args in [(a, col, bias), (a, mid, col), (a[:, ::-1], bias, mid)]:
        _check(f(*args), np.tanh(args[0] * args[1] + args[2]), "float32", "threads")


def test_negative_integer_power_raises_through_the_strided_entry():
    x, y = st.tensor("int32", ndim=2), st.tensor("int32", ndim=2)
    f = sp.function([x, y], x**y, backend="cpu")
    a = np.arange(1, 13, dtype=np.int32).reshape(3, 4)
    np.testing.assert_array_equal(f(a, np.array([[2], [1], [0]], np.int32)), a ** np.array([[2], [1], [0]]))
    with pytest.raises(ValueError, match="negative integer powers"):
        f(a, np.array([[2], [-1], [0]], np.int32))  # a column: inner stride 0, read from the row's buffer
    with pytest.raises(ValueError, match="negative integer powers"):
        f(a.T, np.array([[1, 1, -2]], np.int32))


def test_strided_entry_vectorizes_its_loop():
    x, y = st.tensor("float32", ndim=2), st.tensor("float32", ndim=1)
    f = sp.function([x, y], st.tanh(x + y), backend="cpu")
    (kernel,) = f.program.kernels
    body = kernel.llvm_ir.split("_loop(", 1)[1].split("\n}\n", 1)[0]  # the loop function the rows call
    assert "x float>" in body
