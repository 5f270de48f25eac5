"""Indexing against numpy: integers, slices (constant and symbolic bounds), None, Ellipsis, integer arrays on
one or several axes (numpy's placement rule for adjacent and non-adjacent advanced indices), boolean masks, and
set_subtensor / inc_subtensor (repeated indices accumulate like ``np.add.at``).
"""

from __future__ import annotations

import numpy as np
import pytest
from oracle import ALL_DTYPES, assert_same, check, layouts, run, sample, symbolic_like

import sympile as sp
import sympile.tensor as st

X = sample((4, 5, 6), "float64", seed=0)
IDX = np.array  # short for index arrays in the tables below

BASIC = [
    (2,), (-1,), (1, -2), (0, 1, 2), (-4, -5, -6),
    (slice(1, 3),), (slice(None, None, 2),), (slice(None, None, -1),), (slice(-1, 0, -2),), (slice(10, None),),
    (slice(1, -1), slice(None, None, 3), 0), (slice(None), 2), (slice(-100, 100),), (slice(3, 1),),
    (None,), (None, 1, None), (slice(None), None, slice(2, 4)),
    (Ellipsis,), (Ellipsis, 0), (1, Ellipsis), (0, Ellipsis, None), (Ellipsis, slice(None, None, -1), 1),
    (None, Ellipsis, None),
]  # fmt: skip
ADVANCED = [
    (IDX([0, 2, 2]),),
    (IDX([-1, 0]),),
    (IDX([[0, 1], [3, 2]]),),
    (slice(None), IDX([4, 0, 1])),
    (IDX([0, 1]), IDX([2, 3])),  # adjacent: result dims in place
    (slice(None), IDX([0, 1]), IDX([2, 3])),  # adjacent after a slice: (4, 2)
    (IDX([0, 1]), slice(None), IDX([2, 3])),  # not adjacent: advanced dims go first
    (IDX([[0], [1]]), slice(1, 3), IDX([2, 3, 5])),  # broadcast index arrays, not adjacent
    (1, slice(None), IDX([0, 5])),  # an integer counts as an advanced index: not adjacent
    (slice(None), 1, IDX([0, 5])),  # adjacent int and array
    (IDX([1, 0]), Ellipsis, IDX([2])),
    (None, IDX([1, 2]), None, slice(None), IDX([0, 1])),
    (Ellipsis, IDX([0, 1, 2])),
    (slice(None), IDX([0, 1]), Ellipsis, IDX([1, 2])),  # an Ellipsis of no dimension still separates: (2, 4)
    (IDX([0, 1]), 2, Ellipsis),
    (IDX([], dtype=np.int64),),
    (IDX([0, 1], dtype=np.int8), IDX([1, 1], dtype=np.uint8)),
]
MASKS = [
    (X[:, 0, 0] > 0,),
    (slice(None), X[0, :, 0] > 0),
    (X[:, :, 0] > 0,),
    (X > 0,),
    (X[:, 0, 0] > 0, slice(None), 2),
    (Ellipsis, X[0, 0] > 0),
    (slice(None), 0, Ellipsis, X[0, 0] > 0),
    (np.zeros(4, dtype=bool),),
]


def _ids(key):
    return repr(key).replace("array", "").replace(" ", "")[:60]


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("key", BASIC, ids=_ids)
def test_basic_indexing(key, static):
    check(lambda m, v: v[key], X, static=static)


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("key", ADVANCED, ids=_ids)
def test_integer_array_indexing(key, static):
    check(lambda m, v: v[key], X, static=static)


@pytest.mark.parametrize("key", ADVANCED, ids=_ids)
def test_integer_array_indexing_with_symbolic_index_arrays(key):
    arrays = [k for k in key if isinstance(k, np.ndarray)]

    def expr(m, v, *idx):
        it = iter(idx)
        return v[tuple(next(it) if isinstance(k, np.ndarray) else k for k in key)]

    check(expr, X, *arrays)


@pytest.mark.parametrize("key", MASKS, ids=lambda k: "mask")
def test_boolean_masks(key):
    check(lambda m, v: v[key], X)
    arrays = [k for k in key if isinstance(k, np.ndarray)]

    def expr(m, v, *masks):
        it = iter(masks)
        return v[tuple(next(it) if isinstance(k, np.ndarray) else k for k in key)]

    check(expr, X, *arrays)


def test_mask_from_the_graph_itself():
    check(lambda m, v: v[m.gt(v, 0)], X)
    check(lambda m, v: v[m.gt(v[:, 0, 0], 0)] * 2, X)
    check(lambda m, v: m.sum(v[m.lt(v, 0)]), X)


def test_mask_and_integer_array_together():
    mask = np.array([True, False, True, False])
    check(lambda m, v, k: v[k, IDX([1, 3])], X, mask)


def test_static_shape_of_indexing():
    x = st.tensor(dtype="float64", shape=(4, None, 6))
    assert x[1:3].static_shape == (2, None, 6)
    assert x[..., ::2].static_shape == (4, None, 3)
    assert x[IDX([0, 1]), :, IDX([2, 3])].static_shape == (2, None)
    assert x[:, IDX([0, 1]), IDX([[2, 3]])].static_shape == (4, 1, 2)
    assert x[x > 0].static_shape == (None,)
    n = st.lscalar("n")
    assert x[n:].static_shape == (None, None, 6)
    assert x[n].static_shape == (None, 6)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_indexing_every_dtype(dtype):
    a = sample((3, 4), dtype, seed=1)
    check(lambda m, v: (v[1], v[:, ::-2], v[IDX([2, 0])], v[..., None], v[IDX([0, 2]), IDX([1, 3])]), a)


@pytest.mark.parametrize("layout", ["C", "F", "strided", "negative"])
def test_indexing_non_contiguous_inputs(layout):
    a = layouts(X)[layout]
    check(lambda m, v: (v[1:, ::-1], v[IDX([0, 3]), :, IDX([1, 2])], v[v > 0], v.T[0]), a)


def test_symbolic_integer_and_slice_bounds():
    x = st.dtensor3("x")
    i, j, k = st.lscalars("i", "j", "k")
    n = st.iscalar("n")  # int32 bounds work too
    f = sp.function([x, i, j, k, n], [x[i], x[i:j], x[::k], x[i:j:k, n], x[-i], x[:n, ..., j:]])
    for vals in [(1, 3, 2, 0), (0, 4, -1, 2), (2, -1, 3, 1), (3, 1, -2, -1)]:
        iv, jv, kv, nv = vals
        got = f(X, iv, jv, kv, nv)
        want = [X[iv], X[iv:jv], X[::kv], X[iv:jv:kv, nv], X[-iv], X[:nv, ..., jv:]]
        for g, w in zip(got, want):
            assert_same(g, w)


def test_tutorial_negative_log_likelihood():
    p = sample((5, 3), "float64", seed=2, low=0.05, high=1.0)
    y = np.array([0, 2, 1, 1, 0], dtype="int32")
    check(lambda m, pv, yv: -m.mean(m.log(pv)[m.arange(yv.shape[0]), yv]), p, y)
    check(lambda m, pv, yv: m.log(pv)[m.arange(yv.shape[0]), yv], p, y, static=True)


def test_index_errors():
    x = st.tensor(dtype="float64", shape=(3, 4), name="x")
    with pytest.raises(IndexError, match="out of bounds"):
        x[3]
    with pytest.raises(IndexError, match="out of bounds"):
        x[:, -5]
    with pytest.raises(IndexError, match="index 3 is out of bounds for axis 0"):
        x[[0, 3]]
    with pytest.raises(IndexError, match="index -5 is out of bounds for axis 1"):
        x[:, IDX([-5, 1])]
    with pytest.raises(IndexError, match="too many"):
        x[0, 0, 0]
    with pytest.raises(IndexError, match="ellipsis"):
        x[..., ...]
    with pytest.raises(TypeError):
        x[1.5]
    with pytest.raises(TypeError):
        x[st.dvector()]
    with pytest.raises(TypeError):
        x[True]
    with pytest.raises(ValueError, match="step"):
        x[::0]
    with pytest.raises(IndexError):
        x[np.ones(4, dtype=bool)]  # a mask of the wrong length for axis 0
    with pytest.raises(ValueError, match="broadcast"):
        x[IDX([0, 1]), IDX([0, 1, 2])]
    y = st.dmatrix("y")
    f = sp.function([y], y[5])
    with pytest.raises(IndexError, match=r"getitem .*test_ops_indexing\.py"):
        f(np.ones((2, 2)))


# --- set_subtensor / inc_subtensor ------------------------------------------------------------------------------
def _set_ref(a, key, y):
    out = a.copy()
    out[key] = y
    return out


def _inc_ref(a, key, y):
    out = a.copy()
    # np.add.at wants integer arrays: a mask is its nonzero() positions
    flat = []
    for k in key if isinstance(key, tuple) else (key,):
        flat.extend(np.nonzero(k) if isinstance(k, np.ndarray) and k.dtype == bool else [k])
    np.add.at(out, tuple(flat), y)
    return out


SET_CASES = [
    # (key, value shape)
    ((slice(1, 3),), (2, 5, 6)),
    ((slice(1, 3),), (6,)),  # broadcast
    ((slice(1, 3),), ()),
    ((0, slice(None, None, 2)), (3, 6)),
    ((Ellipsis, 1), (4, 5)),
    ((IDX([0, 2, 3]),), (3, 5, 6)),
    ((IDX([0, 0, 3, 0]),), (4, 1, 6)),  # repeated indices
    ((IDX([1, 1]), slice(None), IDX([2, 2])), (2, 5)),  # repeated, non-adjacent
    ((slice(None), IDX([0, 1]), IDX([2, 2])), (4, 2)),
    ((X[:, 0, 0] > 0,), (6,)),
    ((X > 0,), ()),
    ((-1, None, slice(None, None, -1)), (1, 5, 6)),
]


@pytest.mark.parametrize("key,yshape", SET_CASES, ids=lambda c: _ids(c) if isinstance(c, tuple) else "")
@pytest.mark.parametrize("mode", ["set", "inc"])
def test_set_and_inc_subtensor(mode, key, yshape):
    y = sample(yshape, "float64", seed=3)
    ref = _set_ref if mode == "set" else _inc_ref
    fn = st.set_subtensor if mode == "set" else st.inc_subtensor

    def expr(m, v, w):
        return fn(v[key], w) if m is st else ref(v, key, w)

    check(expr, X, y)
    check(expr, X, y, static=True)


def test_inc_subtensor_repeated_indices_accumulate():
    a = np.zeros(4)
    got = check(
        lambda m, v, i: st.inc_subtensor(v[i], 1.0) if m is st else _inc_ref(v, (i,), 1.0), a, IDX([0, 0, 3, 0])
    )
    assert_same(got, np.array([3.0, 0.0, 0.0, 1.0]))
    m = np.zeros((3, 3))
    i, j = IDX([0, 0, 2]), IDX([1, 1, 2])
    got = check(
        lambda mm, v: st.inc_subtensor(v[i, j], [1.0, 2.0, 5.0]) if mm is st else _inc_ref(v, (i, j), [1, 2, 5.0]), m
    )
    assert got[0, 1] == 3.0 and got[2, 2] == 5.0


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_set_and_inc_subtensor_dtypes(dtype):
    a = sample((3, 4), dtype, seed=4)
    y = sample((4,), dtype, seed=5)
    check(lambda m, v, w: st.set_subtensor(v[1], w) if m is st else _set_ref(v, (1,), w), a, y)
    if dtype != "bool":
        check(lambda m, v, w: st.inc_subtensor(v[IDX([0, 0])], w) if m is st else _inc_ref(v, (IDX([0, 0]),), w), a, y)
    check(lambda m, v: st.set_subtensor(v[:, 0], 1) if m is st else _set_ref(v, (slice(None), 0), 1), a)


def test_set_subtensor_casts_within_kind_and_rejects_lossy_values():
    x = st.fvector("x")
    out = st.set_subtensor(x[:2], st.dvector("y"))  # float64 into float32: same kind, allowed
    assert out.dtype == "float32"
    with pytest.raises(TypeError, match="float64"):
        st.set_subtensor(st.ivector()[:2], st.dvector())
    with pytest.raises(ValueError, match=r"\(3,\)"):
        st.set_subtensor(st.tensor(dtype="float64", shape=(5,))[:2], st.tensor(dtype="float64", shape=(3,)))
    with pytest.raises(TypeError, match="indexed"):
        st.set_subtensor(st.dvector() + 1, 0.0)
    # Python scalars: any number into floats, only exact values into integers and bools
    assert st.set_subtensor(st.fvector()[:2], 0.1).dtype == "float32"
    with pytest.raises(TypeError, match="0.5"):
        st.set_subtensor(st.ivector()[:2], 0.5)
    with pytest.raises(OverflowError, match="300"):
        st.inc_subtensor(st.tensor(dtype="uint8", shape=(None,))[:2], 300)
    with pytest.raises(OverflowError):
        st.set_subtensor(st.tensor(dtype="bool", shape=(None,))[:2], 2)


def test_set_subtensor_does_not_change_its_input():
    a = sample((4, 5, 6), "float64", seed=6)
    before = a.copy()
    _, got = run(lambda v: st.set_subtensor(v[0], 0.0), a)
    assert_same(a, before)
    assert got[0].sum() == 0.0


def test_set_subtensor_with_symbolic_bounds():
    x = st.dvector("x")
    n = st.lscalar("n")
    f = sp.function([x, n], st.inc_subtensor(x[n:], 10.0))
    assert_same(f(np.arange(5.0), 3), np.array([0.0, 1.0, 2.0, 13.0, 14.0]))


def test_eval_of_indexing():
    x = symbolic_like(X)
    assert_same(x[1, ::2].eval({x: X}), X[1, ::2])


@pytest.mark.parametrize("mode", ["set", "inc"])
def test_set_and_inc_subtensor_of_nested_indexing_update_the_whole_tensor(mode):
    fn = st.set_subtensor if mode == "set" else st.inc_subtensor

    def expr(m, v, w):
        if m is st:
            return fn(v[1:][0, ::2], w)
        out = v.copy()
        if mode == "set":
            out[1:][0, ::2] = w
        else:
            out[1:][0, ::2] += w
        return out

    check(expr, X, sample((3, 6), "float64", seed=7), static=True)
