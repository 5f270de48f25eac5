"""Shape ops against numpy: reshape, flatten, transpose, dimshuffle, expand_dims, squeeze, concatenate, stack,
zeros/ones/full(_like), alloc, arange, and the symbolic shape (``x.shape[0]`` used inside graphs).

Most expressions are written once and run both on numpy arrays and on symbolic inputs (see ``oracle.check``);
``static=True`` also checks that the result's static shape is inferred in full when the inputs' shapes are known.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracle import ALL_DTYPES, assert_same, check, layouts, run, sample, symbolic_like

import sympile as sp
import sympile.tensor as st

X234 = sample((2, 3, 4), "float64", seed=0)


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("shape", [(6, 4), (-1,), (4, -1), (2, 3, 2, 2), (24, 1), (1, -1, 1), (3, 8)], ids=str)
def test_reshape_constant_shapes(shape, static):
    check(lambda m, v: m.reshape(v, shape), X234, static=static)
    check(lambda m, v: v.reshape(shape), X234, static=static)


@pytest.mark.parametrize("static", [False, True])
def test_reshape_with_symbolic_entries(static):
    check(lambda m, v: v.reshape((v.shape[0], -1)), X234, static=static)
    check(lambda m, v: v.reshape((v.shape[0] * v.shape[1], v.shape[2])), X234, static=static)
    check(lambda m, v: v.reshape((-1, v.shape[-1], 1)), X234, static=static)
    check(lambda m, v: m.reshape(v, v.shape), X234, static=static)
    check(lambda m, v, w: m.reshape(w, v.shape), X234, np.arange(24.0), static=static)


def test_reshape_static_shape_of_symbolic_entry_is_inferred():
    x = st.tensor(dtype="float64", shape=(2, 3, 4))
    assert x.reshape((x.shape[0], -1)).static_shape == (2, 12)
    y = st.tensor(dtype="float64", shape=(None, 3, 4))
    assert y.reshape((y.shape[0], -1)).static_shape == (None, None)
    assert y.reshape((-1, 12)).static_shape == (None, 12)


def test_reshape_errors():
    x = st.tensor(dtype="float64", shape=(2, 3), name="x")
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        x.reshape((4,))
    with pytest.raises(ValueError, match="one unknown"):
        x.reshape((-1, -1))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        x.reshape((4, -1))
    y = st.dmatrix("y")
    f = sp.function([y], y.reshape((5, -1)))
    with pytest.raises(ValueError, match=r"reshape .*test_ops_shapes\.py"):
        f(np.ones((2, 3)))


@pytest.mark.parametrize("layout", ["C", "F", "strided", "negative"])
def test_reshape_of_non_contiguous_input_is_c_order(layout):
    x = layouts(X234)[layout]
    check(lambda m, v: v.reshape((4, 6)), x)
    check(lambda m, v: v.T.reshape((-1,)), x)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_flatten_ndim(ndim):
    got = check(lambda m, v: v.reshape(v.shape[: ndim - 1] + (-1,)) if m is not st else v.flatten(ndim), X234)
    assert got.ndim == ndim
    check(lambda m, v: m.flatten(v) if m is st else v.reshape(-1), X234, static=True)
    with pytest.raises(ValueError, match="ndim"):
        st.flatten(symbolic_like(X234), 4)


@pytest.mark.parametrize("axes", [None, (1, 0, 2), (2, 0, 1), (-1, 0, 1), (0, 1, 2)], ids=str)
def test_transpose(axes):
    check(lambda m, v: m.transpose(v, axes), X234, static=True)
    check(lambda m, v: v.transpose(axes) if axes else v.transpose(), X234, static=True)
    with pytest.raises(ValueError):
        st.transpose(symbolic_like(X234), (0, 0, 1))


def test_T_shape_ndim_dtype():
    for dtype in ALL_DTYPES:
        a = sample((2, 3), dtype, seed=1)
        check(lambda m, v: v.T, a, static=True)
        check(lambda m, v: v.shape, a)
        check(lambda m, v: v.T.shape, a, static=True)
        x = symbolic_like(a)
        assert x.ndim == a.ndim and np.dtype(x.dtype) == a.dtype and x.T.dtype == x.dtype
    check(lambda m, v: v.T, np.arange(3.0))  # .T of a vector is the vector
    check(lambda m, v: v.T, np.float64(2.0))


def test_symbolic_shape_entries_in_graphs():
    check(lambda m, v: v * v.shape[0], X234)
    check(lambda m, v: m.sum(v, axis=0) / v.shape[0], X234)
    check(lambda m, v: v.shape[-1] + v.shape[1], X234)
    check(lambda m, v: m.arange(v.shape[1]) * 2, X234)
    check(lambda m, v: v[: v.shape[0] - 1], X234)
    # the symbolic shape is an int64 tensor, not a weak Python int: float32 * x.shape[0] is float64 (as Theano)
    x = st.fvector("x")
    assert (x * x.shape[0]).dtype == "float64"


def test_symbolic_shape_is_static_when_known():
    x = st.tensor(dtype="float64", shape=(2, None, 4))
    assert x.shape.static_shape == (3,)
    _, got = run(lambda v: v.shape[0] * v.shape[2], np.ones((2, 5, 4)), static=False)
    assert got == 8 and got.dtype == np.int64


DIMSHUFFLES = [
    # (pattern, numpy reference)
    (("x", 0, 1, 2), lambda a: a[None]),
    ((0, "x", 1, 2), lambda a: a[:, None]),
    ((2, 1, 0), lambda a: a.transpose(2, 1, 0)),
    ((1, "x", 2, 0, "x"), lambda a: a.transpose(1, 2, 0)[:, None, :, :, None]),
]


@pytest.mark.parametrize("pattern,ref", DIMSHUFFLES, ids=lambda p: str(p) if isinstance(p, tuple) else "")
def test_dimshuffle(pattern, ref):
    def expr(m, v):
        return v.dimshuffle(*pattern) if m is st else ref(v)

    check(expr, X234, static=True)
    check(expr, X234)
    check(lambda m, v: v.dimshuffle(pattern) if m is st else ref(v), X234)  # a list/tuple works too


def test_dimshuffle_drops_broadcastable_dims():
    a = np.arange(3.0).reshape(3, 1)
    x = st.tensor(dtype="float64", shape=(None, 1))
    f = sp.function([x], x.dimshuffle(0))
    assert_same(f(a), a[:, 0])
    y = st.dmatrix("y")  # dimension 1 of unknown size: allowed at build time, checked at run time
    g = sp.function([y], y.dimshuffle("x", 0))
    assert_same(g(a), a[:, 0][None])
    with pytest.raises(ValueError):
        g(np.ones((3, 2)))
    with pytest.raises(ValueError, match="size 4"):
        st.tensor(dtype="float64", shape=(3, 4)).dimshuffle(0)
    with pytest.raises(ValueError):
        st.dmatrix().dimshuffle(0, 0)


@pytest.mark.parametrize("axis", [0, 1, -1, 3, -4, (0, 2), (0, -1), (1, 2, 3)], ids=str)
def test_expand_dims(axis):
    check(lambda m, v: m.expand_dims(v, axis), X234, static=True)


@pytest.mark.parametrize("axis", [None, 0, 2, -1, (0, 2), (2, 0)], ids=str)
def test_squeeze(axis):
    a = sample((1, 3, 1), "int16", seed=2)
    check(lambda m, v: m.squeeze(v, axis) if axis is not None else m.squeeze(v), a, static=True)
    check(lambda m, v: v.squeeze(axis) if axis is not None else v.squeeze(), a, static=True)
    if axis is not None:
        check(lambda m, v: m.squeeze(v, axis), a)  # unknown static dims: checked at run time


def test_squeeze_of_non_unit_dimension_raises():
    x = st.tensor(dtype="float64", shape=(1, 3))
    with pytest.raises(ValueError, match="size 3"):
        st.squeeze(x, 1)


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("axis", [0, 1, -1, -2], ids=str)
def test_concatenate(axis, static):
    a = sample((2, 3), "float32", seed=3)
    b = sample((2, 3), "int8", seed=4)
    c = sample((2, 3), "float64", seed=5)
    check(lambda m, x, y: m.concatenate([x, y], axis=axis), a, b, static=static)
    check(lambda m, x, y, z: m.concatenate((x, y, z), axis=axis), a, b, c, static=static)
    check(lambda m, x: m.concatenate([x], axis=axis), a, static=static)


@pytest.mark.parametrize("da", ALL_DTYPES)
def test_concatenate_promotes_like_numpy(da):
    for db in ALL_DTYPES:
        check(lambda m, x, y: m.concatenate([x, y]), sample(3, da, seed=6), sample(2, db, seed=7))
        check(lambda m, x, y: m.stack([x, y]), sample(2, da, seed=6), sample(2, db, seed=7))


def test_concatenate_uneven_and_empty():
    a, b, e = sample((2, 3), "float64", seed=8), sample((4, 3), "float64", seed=9), np.zeros((0, 3))
    check(lambda m, x, y, z: m.concatenate([x, z, y]), a, b, e, static=True)
    check(lambda m, x, y: m.concatenate([x, y], axis=0), a, b)
    assert st.join(0, symbolic_like(a), symbolic_like(b)).ndim == 2


def test_concatenate_errors_name_shapes():
    a = st.tensor(dtype="float64", shape=(2, 3))
    b = st.tensor(dtype="float64", shape=(2, 4))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        st.concatenate([a, b], axis=0)
    with pytest.raises(ValueError, match="rank"):
        st.concatenate([a, st.dvector()])
    with pytest.raises(ValueError):
        st.concatenate([st.dscalar(), st.dscalar()])
    with pytest.raises(ValueError, match="out of bounds"):
        st.concatenate([a, a], axis=2)
    with pytest.raises(ValueError):
        st.concatenate([])


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3], ids=str)
def test_stack(axis, static):
    a, b = sample((2, 3), "float64", seed=10), sample((2, 3), "float64", seed=11)
    check(lambda m, x, y: m.stack([x, y], axis=axis), a, b, static=static)
    check(lambda m, x, y: m.stack([x, y, x], axis=axis), a, b, static=static)


def test_stack_of_scalars_and_lists_of_variables():
    check(lambda m, x, y: m.stack([x, y, x * y]), np.float64(2.0), np.float64(3.0), static=True)
    x, y = st.dscalars("x", "y")
    v = st.as_tensor_variable([x, y])
    assert v.static_shape == (2,)
    assert_same(sp.function([x, y], v)(1.0, 2.0), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="same shape"):
        st.stack([st.tensor(dtype="float64", shape=(2,)), st.tensor(dtype="float64", shape=(3,))])


@pytest.mark.parametrize("dtype", [None, "float32", "int8", "bool", "uint8"])
def test_zeros_ones_full(dtype):
    check(lambda m, v: m.zeros((2, 3), dtype=dtype) if dtype else m.zeros((2, 3)), X234, static=True)
    check(lambda m, v: m.ones(4, dtype=dtype) if dtype else m.ones(4), X234, static=True)
    check(lambda m, v: m.zeros(v.shape, dtype=dtype) if dtype else m.zeros(v.shape), X234, static=True)
    check(lambda m, v: m.ones((v.shape[0], 5), dtype=dtype) if dtype else m.ones((v.shape[0], 5)), X234)
    for fill in (2, 2.5, True, -1):
        if dtype == "uint8" and fill == -1:
            continue
        check(lambda m, v, f=fill: m.full(v.shape, f, dtype=dtype) if dtype else m.full(v.shape, f), X234)
        check(lambda m, v, f=fill: m.full((3,), f, dtype=dtype) if dtype else m.full((3,), f), X234, static=True)
    check(lambda m, v: m.zeros(()), X234, static=True)
    check(lambda m, v: m.zeros((0, 3)), X234, static=True)


def test_full_with_symbolic_value():
    check(lambda m, v: m.full((2, 3), m.sum(v)), X234, static=True)
    check(lambda m, v: m.full((2, 3), m.sum(v), dtype="float32"), X234, static=True)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_zeros_like_ones_like(dtype):
    a = sample((3, 2), dtype, seed=12)
    check(lambda m, v: (m.zeros_like(v), m.ones_like(v)), a, static=True)
    check(lambda m, v: (m.zeros_like(v), m.ones_like(v)), a)
    check(lambda m, v: (m.zeros_like(v, dtype="float32"), m.ones_like(v, dtype="int16")), a)
    check(lambda m, v: m.full_like(v, 1), a)


def test_alloc():
    def ref(value, *shape):
        return np.broadcast_to(value, shape).copy()

    a = sample((3,), "float32", seed=13)
    check(lambda m, v: st.alloc(v, 2, 3) if m is st else ref(v, 2, 3), a, static=True)
    check(lambda m, v: st.alloc(v, v.shape[0] + 1, v.shape[0]) if m is st else ref(v, 4, 3), a)
    check(lambda m, v: st.alloc(v[0], 2, 2) if m is st else ref(v[0], 2, 2), a, static=True)
    check(lambda m, v: st.alloc(2.5, 2) if m is st else ref(2.5, 2), a, static=True)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 4\)"):
        st.alloc(st.tensor(dtype="float64", shape=(3,)), 2, 4)
    with pytest.raises(ValueError, match="rank"):
        st.alloc(st.dmatrix(), 3)
    with pytest.raises(TypeError, match="integer scalar"):
        st.alloc(1.0, st.dscalar())


ARANGES = [(5,), (2, 7), (7, 2, -2), (0,), (3, 3), (5, 1), (1, 10, 3), (0.5, 3.0), (0, 1, 0.25), (-3, 2.5)]


@pytest.mark.parametrize("args", ARANGES, ids=str)
def test_arange(args):
    check(lambda m, v: m.arange(*args), X234, static=all(isinstance(a, int) for a in args))
    check(lambda m, v: m.arange(*args, dtype="float32"), X234)
    if all(isinstance(a, int) and a >= 0 for a in args):
        check(lambda m, v: m.arange(*args, dtype="uint8"), X234)


def test_arange_with_symbolic_bounds():
    check(lambda m, v: m.arange(v.shape[0]), X234, static=True)
    check(lambda m, v: m.arange(1, v.shape[2] * 2, 3), X234)
    check(lambda m, v: m.arange(m.max(v), 5.0, 0.5), X234)
    n = st.lscalar("n")
    f = sp.function([n], st.arange(n) * 2)
    assert_same(f(4), np.arange(4) * 2)
    with pytest.raises(ValueError, match="zero"):
        st.arange(0, 5, 0)


def test_shape_ops_compose():
    a = sample((2, 3, 4), "float64", seed=14)
    check(lambda m, v: m.concatenate([v, m.zeros_like(v)], axis=-1).reshape((v.shape[0], -1)).T, a)
    check(lambda m, v: m.stack([v.sum(axis=0), v.max(axis=0)], axis=-1).transpose(2, 0, 1), a, static=True)
    check(lambda m, v: m.expand_dims(v, 0) * m.expand_dims(v, -1)[..., 0], a)


def test_bad_axes_raise_like_numpy():
    x = st.tensor(dtype="float64", shape=(2, 3, 1))
    with pytest.raises(ValueError, match="out of bounds"):
        st.expand_dims(x, 5)
    with pytest.raises(ValueError, match="repeated"):
        st.expand_dims(x, (0, 0))
    with pytest.raises(ValueError, match="out of bounds"):
        st.squeeze(x, 5)
    with pytest.raises(ValueError, match="out of bounds"):
        st.squeeze(x, -4)
    with pytest.raises(ValueError, match="repeated"):
        st.squeeze(x, (2, -1))
    with pytest.raises(ValueError, match="out of bounds"):
        st.transpose(x, (0, 1, 5))
    with pytest.raises(ValueError, match="permutation"):
        st.transpose(x, (0, 1))
    with pytest.raises(ValueError, match="out of bounds"):
        st.stack([x, x], axis=4)
    with pytest.raises(ValueError, match="zero"):
        st.arange(0, 1.0, 0.0)


def test_size_len_and_iteration():
    check(lambda m, v: v.size if m is st else np.int64(v.size), X234)
    x = st.tensor(dtype="float64", shape=(2, None))
    assert len(x) == 2
    parts = list(x)
    assert len(parts) == 2 and parts[0].ndim == 1
    with pytest.raises(TypeError, match="len"):
        len(st.dvector())
    check(lambda m, v: v.reshape(v.shape[1:]), X234[:1])
