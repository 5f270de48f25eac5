"""sympile.function, shared variables, eval and argument checking, against numpy and Theano's semantics."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import textwrap
import warnings
import weakref

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st
from sympile.runtime.backends import BACKENDS

FUNCTION_MODULE = sys.modules["sympile.function"]  # the attribute sympile.function is the function itself


def _here() -> int:
    """The caller's line number: errors must point at the line that built the failing node."""
    return sys._getframe(1).f_lineno


# --- the Theano tutorial basics ------------------------------------------------------------------------------
def test_tutorial_adding_two_scalars():
    x = st.dscalar("x")
    y = st.dscalar("y")
    z = x + y
    f = sp.function([x, y], z)
    out = f(2, 3)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == ()
    assert out == 5.0
    np.testing.assert_allclose(f(16.3, 12.1), 28.4)
    assert float(z.eval({x: 16.3, y: 12.1})) == pytest.approx(28.4)


def test_tutorial_adding_two_matrices():
    x, y = st.dmatrices("x", "y")
    f = sp.function([x, y], x + y)
    out = f([[1, 2], [3, 4]], [[10, 20], [30, 40]])
    np.testing.assert_array_equal(out, np.array([[11.0, 22.0], [33.0, 44.0]]))
    assert out.dtype == np.float64
    a, b = np.random.default_rng(0).normal(size=(2, 3, 4))
    np.testing.assert_array_equal(f(a, b), a + b)


def test_tutorial_logistic_function():
    x = st.dmatrix("x")
    s = 1 / (1 + st.exp(-x))
    s2 = (1 + st.tanh(x / 2)) / 2
    logistic, logistic2 = sp.function([x], s), sp.function([x], s2)
    v = np.array([[0, 1], [-1, -2]], dtype=float)
    expected = 1 / (1 + np.exp(-v))
    np.testing.assert_allclose(logistic(v), expected, rtol=1e-15)
    np.testing.assert_allclose(logistic2(v), expected, rtol=1e-15)


def test_tutorial_several_outputs():
    a, b = st.dmatrices("a", "b")
    diff = a - b
    f = sp.function([a, b], [diff, abs(diff), diff**2])
    va, vb = np.array([[1, 1], [1, 1]]), np.array([[0, 1], [2, 3]])
    outs = f(va, vb)
    assert isinstance(outs, list) and len(outs) == 3
    d = (va - vb).astype(float)
    for got, want in zip(outs, [d, np.abs(d), d**2]):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.float64


def test_tutorial_shared_accumulator():
    state = sp.shared(0)
    inc = st.iscalar("inc")
    accumulator = sp.function([inc], state, updates=[(state, state + inc)])
    assert state.dtype == "int64"
    assert accumulator(1) == 0  # the output is the value before the update
    assert state.get_value() == 1
    assert accumulator(300) == 1
    assert state.get_value() == 301
    state.set_value(-1)
    assert accumulator(3) == -1
    assert state.get_value() == 2
    decrementor = sp.function([inc], state, updates=[(state, state - inc)])
    assert decrementor(2) == 2
    assert state.get_value() == 0


def test_tutorial_givens_replace_shared():
    state = sp.shared(0)
    inc = st.iscalar("inc")
    fn_of_state = state * 2 + inc
    foo = st.scalar(dtype=state.dtype)
    skip_shared = sp.function([inc, foo], fn_of_state, givens=[(state, foo)])
    assert skip_shared(1, 3) == 7
    assert state.get_value() == 0  # the shared value was not used and not changed


# --- arguments -------------------------------------------------------------------------------------------------
def test_positional_and_keyword_arguments():
    x, y = st.dvectors("x", "y")
    f = sp.function([x, y], x - y)
    want = np.array([-2.0, -2.0])
    np.testing.assert_array_equal(f([1, 2], [3, 4]), want)
    np.testing.assert_array_equal(f(x=[1, 2], y=[3, 4]), want)
    np.testing.assert_array_equal(f(y=[3, 4], x=[1, 2]), want)
    np.testing.assert_array_equal(f([1, 2], y=[3, 4]), want)


def test_wrong_argument_count():
    x, y = st.dvectors("x", "y")
    f = sp.function([x, y], x + y)
    with pytest.raises(TypeError, match=r"takes 2 arguments, got 3"):
        f([1.0], [1.0], [1.0])
    with pytest.raises(TypeError, match=r"missing argument for input 1 \('y'\) of type float64\[\?\]"):
        f([1.0])
    with pytest.raises(TypeError, match=r"input 0 \('x'\) is given twice"):
        f([1.0], x=[1.0])


def test_unknown_and_ambiguous_keywords():
    x, y = st.dvectors("x", "y")
    f = sp.function([x, y], x + y)
    with pytest.raises(TypeError, match=r"unknown keyword argument 'z' \(input names: 'x', 'y'\)"):
        f([1.0], z=[1.0])
    a, b = st.dvectors("v", "v")
    g = sp.function([a, b], a * b)
    with pytest.raises(TypeError, match="ambiguous"):
        g(v=[1.0], w=[2.0])
    np.testing.assert_array_equal(g([2.0], [3.0]), [6.0])  # by position it works


def test_wrong_rank():
    x = st.dvector("x")
    f = sp.function([x], x * 2)
    with pytest.raises(
        TypeError, match=r"input 0 \('x'\): expected a tensor of rank 1 .*got rank 2 with shape \(1, 2\)"
    ):
        f([[1.0, 2.0]])
    with pytest.raises(TypeError, match=r"got rank 0"):
        f(3.0)


def test_static_shape_mismatch():
    x = st.tensor("float64", shape=(3, None), name="x")
    f = sp.function([x], x.sum(axis=0))
    np.testing.assert_array_equal(f(np.ones((3, 2))), [3.0, 3.0])
    with pytest.raises(ValueError, match=r"input 0 \('x'\): expected shape \(3, \?\), got \(2, 2\)"):
        f(np.ones((2, 2)))


@pytest.mark.parametrize(
    "bad",
    ["abc", b"abc", None, [object()], [[1.0, 2.0], [3.0]], np.array(["a", "b"]), [1j, 2j], {"a": 1}],
    ids=["str", "bytes", "None", "object", "ragged", "str-array", "complex", "dict"],
)
def test_non_numeric_data_raises_type_error_naming_input(bad):
    x = st.dvector("xs")
    f = sp.function([x], x + 1)
    with pytest.raises(TypeError, match=r"input 0 \('xs'\)"):
        f(bad)


class _ArrayLike:
    """Any object with ``__array__`` is accepted, like numpy does."""

    def __array__(self, dtype=None, copy=None):
        return np.arange(3.0)


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        (st.dvector("x"), [1, 2, 3], np.array([1.0, 2.0, 3.0])),  # Python ints into float64
        (st.dvector("x"), (1.5, 2), np.array([1.5, 2.0])),  # tuple
        (st.dvector("x"), range(3), np.arange(3.0)),  # any iterable numpy understands
        (st.dvector("x"), _ArrayLike(), np.arange(3.0)),
        (st.dvector("x"), memoryview(np.array([4.0, 5.0])), np.array([4.0, 5.0])),
        (st.dvector("x"), np.array([True, False]), np.array([1.0, 0.0])),  # bool widens
        (st.dvector("x"), np.arange(3, dtype=np.int32), np.arange(3.0)),
        (st.dscalar("x"), 2, np.array(2.0)),
        (st.dscalar("x"), np.float32(0.5), np.array(0.5)),
        (st.dscalar("x"), np.array(7), np.array(7.0)),
        (st.dscalar("x"), True, np.array(1.0)),
        (st.fvector("x"), [0.1, 0.2], np.array([0.1, 0.2], dtype=np.float32)),  # float64 data into float32
        (st.fvector("x"), np.array([0.1]), np.array([0.1], dtype=np.float32)),
        (st.ivector("x"), [1, 2], np.array([1, 2], dtype=np.int32)),  # int64 values that fit
        (st.ivector("x"), np.array([2**31 - 1, -(2**31)]), np.array([2**31 - 1, -(2**31)], dtype=np.int32)),
        (st.ivector("x"), [True, False], np.array([1, 0], dtype=np.int32)),
        (st.bvector("x"), np.array([1, -2], dtype=np.int64), np.array([1, -2], dtype=np.int8)),
        (st.lscalar("x"), np.uint32(7), np.array(7)),
        (st.ivector("x"), [], np.array([], dtype=np.int32)),  # an empty list holds nothing to lose
        (st.imatrix("x"), [[], []], np.zeros((2, 0), dtype=np.int32)),
    ],
)
def test_safe_casts(var, value, expected):
    f = sp.function([var], var)
    out = f(value)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("var", "value", "match"),
    [
        (st.ivector("n"), [1.5, 2.0], r"input 0 \('n'\): expected int32\[\?\], got float64 data"),
        (st.ivector("n"), [1.0, 2.0], r"input 0 \('n'\): expected int32\[\?\], got float64 data"),  # kind matters
        (st.lscalar("n"), 2.0, r"input 0 \('n'\).*casting would lose information"),
        (st.lvector("n"), np.array([1.0], dtype=np.float32), r"got float32 data"),
        (st.ivector("n"), np.array([2**40]), r"input 0 \('n'\): values out of the range of int32"),
        (st.bvector("n"), [200], r"out of the range of int8"),
        (st.bvector("n"), np.array([-1, 300], dtype=np.int16), r"out of the range of int8"),
        (st.tensor("bool", shape=(None,), name="n"), [1, 0], r"input 0 \('n'\): expected bool\[\?\], got int64"),
    ],
)
def test_lossy_casts_raise_type_error_naming_input(var, value, match):
    f = sp.function([var], var)
    with pytest.raises(TypeError, match=match):
        f(value)


def test_arguments_are_not_modified_and_results_not_views_of_them():
    x = st.dvector("x")
    f = sp.function([x], [x, x.T, x[::2], x * 2])
    a = np.arange(4.0)
    outs = f(a)
    for out in outs:
        assert not np.shares_memory(out, a)
        out[...] = -1
    np.testing.assert_array_equal(a, np.arange(4.0))
    np.testing.assert_array_equal(f(a)[2], [0.0, 2.0])


def test_strided_and_fortran_arguments():
    m = st.dmatrix("m")
    f = sp.function([m], m * 2 + m.T.T)
    base = np.arange(24.0).reshape(4, 6)
    for arr in (base[::2, 1::2], np.asfortranarray(base), base.T):
        np.testing.assert_array_equal(f(arr), arr * 3)


# --- outputs -----------------------------------------------------------------------------------------------------
def test_single_output_vs_list_of_outputs():
    x = st.dvector("x")
    single = sp.function([x], x + 1)
    assert isinstance(single([1.0]), np.ndarray)
    one_list = sp.function([x], [x + 1])
    out = one_list([1.0])
    assert isinstance(out, list) and len(out) == 1
    np.testing.assert_array_equal(out[0], [2.0])
    pair = sp.function([x], (x + 1, x - 1))
    assert [o.tolist() for o in pair([1.0])] == [[2.0], [0.0]]
    assert sp.function([], [])() == []


def test_outputs_never_alias_each_other_inputs_shared_or_constants():
    x = st.dvector("x")
    w = sp.shared(np.arange(3.0), name="w")
    c = st.constant(np.array([1.0, 2.0, 3.0]))
    f = sp.function([x], [x * 2, x * 2, w, w[1:], c, c[::-1]])
    outs = f(np.ones(3))
    for i, a in enumerate(outs):
        assert a.flags.writeable
        assert not np.shares_memory(a, w.get_value(borrow=True))
        for b in outs[i + 1 :]:
            assert not np.shares_memory(a, b)
    for a in outs:
        a[...] = 99
    np.testing.assert_array_equal(w.get_value(), np.arange(3.0))
    np.testing.assert_array_equal(f(np.ones(3))[4], [1.0, 2.0, 3.0])


def test_output_and_update_of_the_same_expression_do_not_share_memory():
    x = st.dvector("x")
    s1, s2 = sp.shared(np.zeros(2), name="s1"), sp.shared(np.zeros(2), name="s2")
    f = sp.function([x], x * 2, updates=[(s1, x * 2), (s2, x * 2)])
    out = f([1.0, 2.0])
    out[0] = 99
    s1.get_value(borrow=True)[1] = 7
    np.testing.assert_array_equal(s1.get_value(), [2.0, 7.0])
    np.testing.assert_array_equal(s2.get_value(), [2.0, 4.0])


# --- updates -----------------------------------------------------------------------------------------------------
def test_updates_as_pairs_and_as_dict():
    x = st.dvector("x")
    a, b = sp.shared(np.zeros(2), name="a"), sp.shared(np.ones(2), name="b")
    f = sp.function([x], [], updates=[(a, a + x), (b, b * x)])
    g = sp.function([x], [], updates={a: a - x, b: b / x})
    f([2.0, 3.0])
    np.testing.assert_array_equal(a.get_value(), [2.0, 3.0])
    np.testing.assert_array_equal(b.get_value(), [2.0, 3.0])
    g([2.0, 3.0])
    np.testing.assert_array_equal(a.get_value(), [0.0, 0.0])
    np.testing.assert_array_equal(b.get_value(), [1.0, 1.0])


def test_outputs_and_all_updates_use_the_values_before_the_call():
    a, b = sp.shared(1.0, name="a"), sp.shared(2.0, name="b")
    swap = sp.function([], [a, b, a + b], updates=[(a, b), (b, a)])
    assert [float(v) for v in swap()] == [1.0, 2.0, 3.0]
    assert (a.get_value(), b.get_value()) == (2.0, 1.0)
    assert [float(v) for v in swap()] == [2.0, 1.0, 3.0]
    assert (a.get_value(), b.get_value()) == (1.0, 2.0)


def test_update_with_python_number_takes_the_shared_dtype():
    count = sp.shared(np.float32(5.0), name="count")
    reset = sp.function([], count, updates=[(count, 0)])
    assert reset() == 5.0
    assert count.get_value() == 0.0 and count.get_value().dtype == np.float32
    n = sp.shared(np.int32(1), name="n")
    with pytest.raises(TypeError, match=r"update of shared variable 'n'"):
        sp.function([], n, updates=[(n, 0.5)])


def test_bad_updates():
    x = st.dvector("x")
    s = sp.shared(np.zeros(2), name="s")
    with pytest.raises(TypeError, match="update targets must be shared variables"):
        sp.function([x], x, updates=[(x, x + 1)])
    with pytest.raises(ValueError, match="updated twice"):
        sp.function([x], x, updates=[(s, s + 1), (s, s + 2)])
    with pytest.raises(TypeError, match=r"'s': expected dtype float64, got float32"):
        sp.function([x], x, updates=[(s, (s + x).astype("float32"))])
    with pytest.raises(TypeError, match=r"'s': expected rank 1, got rank 0"):
        sp.function([x], x, updates=[(s, x.sum())])
    with pytest.raises(TypeError, match="dict or a list of"):
        sp.function([x], x, updates=[s])


def test_failed_call_changes_no_shared_variable():
    x = st.dvector("x")
    n = st.ivector("n")
    p, q = sp.shared(np.zeros(2), name="p"), sp.shared(np.zeros(2), name="q")
    f = sp.function([x, n], p, updates=[(p, p + 1), (q, q + x + n)])
    with pytest.raises(ValueError, match="could not be broadcast"):
        f([1.0, 2.0, 3.0], [1, 1])  # the second update fails at run time
    with pytest.raises(TypeError, match=r"input 1 \('n'\)"):
        f([1.0, 2.0], [1.5, 1.0])  # a lossy cast of a later argument
    np.testing.assert_array_equal(p.get_value(), [0.0, 0.0])
    np.testing.assert_array_equal(q.get_value(), [0.0, 0.0])
    np.testing.assert_array_equal(f([1.0, 2.0], [1, 1]), [0.0, 0.0])
    np.testing.assert_array_equal(p.get_value(), [1.0, 1.0])
    np.testing.assert_array_equal(q.get_value(), [2.0, 3.0])


def test_run_time_broadcast_error_names_node_and_user_line():
    x, y = st.dvectors("x", "y")
    z, line = x * y, _here()
    f = sp.function([x, y], z)
    with pytest.raises(ValueError) as info:
        f([1.0, 2.0], [1.0, 2.0, 3.0])
    msg = str(info.value)
    assert "(2,), (3,)" in msg  # the shapes that met
    assert f"{__file__}:{line}" in msg  # the user's line that built the failing node
    assert "mul" in msg or "fused" in msg
    # inside a larger expression the optimizer may fuse nodes: the error still points at this file
    g = sp.function([x, y], st.exp(z) + 1)
    with pytest.raises(ValueError, match=rf"\(created at {re.escape(__file__)}:\d+\)"):
        g([1.0, 2.0], [1.0, 2.0, 3.0])


def test_static_broadcast_error_at_build_time_names_shapes_and_line():
    a = st.tensor("float64", shape=(2, 3), name="a")
    b = st.tensor("float64", shape=(4,), name="b")
    with pytest.raises(ValueError) as info:
        line = _here() + 1
        a + b
    msg = str(info.value)
    assert "(2, 3)" in msg and "(4,)" in msg and f"{__file__}:{line}" in msg


# --- givens ------------------------------------------------------------------------------------------------------
def test_givens_dict_and_pairs_replace_an_input():
    x = st.dvector("x")
    z = st.dscalar("z")
    out = x * 2 + x.sum()
    for givens in ({x: st.stack([z, z + 1])}, [(x, st.stack([z, z + 1]))]):
        f = sp.function([z], out, givens=givens)
        np.testing.assert_array_equal(f(3.0), np.array([3.0, 4.0]) * 2 + 7.0)


def test_givens_replace_a_shared_variable_and_leave_it_unchanged():
    w = sp.shared(np.array([1.0, 2.0]), name="w")
    x = st.dvector("x")
    v = st.dvector("v")
    f = sp.function([x, v], (w * x).sum(), givens={w: v})
    assert f([1.0, 1.0], [10.0, 20.0]) == 30.0
    np.testing.assert_array_equal(w.get_value(), [1.0, 2.0])
    g = sp.function([x], (w * x).sum())
    assert g([1.0, 1.0]) == 3.0


def test_givens_with_a_python_number_and_type_checks():
    x = st.fscalar("x")
    y = st.fscalar("y")
    f = sp.function([y], x * y, givens={x: 2.0})
    out = f(3.0)
    assert out == 6.0 and out.dtype == np.float32
    with pytest.raises(TypeError, match="dtype and rank must match"):
        sp.function([y], x * y, givens={x: st.dscalar("d")})
    with pytest.raises(TypeError, match="givens keys must be symbolic"):
        sp.function([y], y, givens={"x": y})


# --- building errors ---------------------------------------------------------------------------------------------
def test_missing_input_named_in_the_error():
    x = st.dvector("x")
    hidden = st.dvector("hidden")
    with pytest.raises(ValueError, match=r"missing input.*input 'hidden' <float64\[\?\]> \(created at .*test_function"):
        sp.function([x], x + hidden)


def test_on_unused_input_raise_warn_ignore():
    x, y = st.dvectors("x", "y")
    with pytest.raises(ValueError, match=r"input 1 \('y'\) is not used"):
        sp.function([x, y], x * 2)
    with pytest.warns(UserWarning, match=r"input 1 \('y'\) is not used"):
        f = sp.function([x, y], x * 2, on_unused_input="warn")
    np.testing.assert_array_equal(f([1.0], [5.0]), [2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = sp.function([x, y], x * 2, on_unused_input="ignore")
    np.testing.assert_array_equal(g([1.0], [5.0]), [2.0])
    with pytest.raises(TypeError, match=r"input 1 \('y'\)"):
        g([1.0], "not a number")  # unused inputs are still checked
    with pytest.raises(ValueError, match="on_unused_input must be"):
        sp.function([x], x, on_unused_input="sometimes")


def test_bad_inputs_list():
    x = st.dvector("x")
    s = sp.shared(np.zeros(2))
    with pytest.raises(TypeError, match="inputs must be a list"):
        sp.function(x, x)
    with pytest.raises(TypeError, match="not a computed expression"):
        sp.function([x + 1], x)
    with pytest.raises(TypeError, match="shared variable"):
        sp.function([s], s)
    with pytest.raises(TypeError, match="not a symbolic variable"):
        sp.function([3.0], x)
    with pytest.raises(ValueError, match="given twice"):
        sp.function([x, x], x)
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        sp.function([x], x, backend="nope")


# --- eval ----------------------------------------------------------------------------------------------------------
def test_eval_computes_and_caches(monkeypatch):
    x = st.dvector("x")
    y = st.dscalar("y")
    w = sp.shared(np.array([1.0, 2.0]), name="w")
    expr = (x + w) * y
    compiled = []
    real = FUNCTION_MODULE.function

    def counting(*args, **kwargs):
        compiled.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(FUNCTION_MODULE, "function", counting)
    np.testing.assert_array_equal(expr.eval({x: [1.0, 1.0], y: 2.0}), [4.0, 6.0])
    np.testing.assert_array_equal(expr.eval({x: [0.0, 0.0], y: 3.0}), [3.0, 6.0])
    assert len(compiled) == 1  # the second call reused the compiled function
    w.set_value(np.array([5.0, 5.0]))
    np.testing.assert_array_equal(expr.eval({x: [0.0, 0.0], y: 1.0}), [5.0, 5.0])  # reads the current value
    assert len(compiled) == 1
    np.testing.assert_array_equal(expr.eval({y: 1.0, x: [0.0, 0.0]}), [5.0, 5.0])  # other key order compiles once
    assert len(compiled) == 2
    assert float((st.constant(2.0) * 3).eval()) == 6.0
    assert (w * 2).eval().tolist() == [10.0, 10.0]


def test_eval_cache_dies_with_the_variable():
    x = st.dvector("x")
    expr = st.exp(x) * 2
    assert expr.eval({x: [0.0]}).tolist() == [2.0]
    node = weakref.ref(expr.node)
    del expr
    gc.collect()
    assert node() is None  # the compiled function did not keep the graph alive


def test_eval_errors():
    x = st.dvector("x")
    with pytest.raises(ValueError, match="missing input"):
        (x + 1).eval()
    with pytest.raises(TypeError, match="keys must be variables"):
        (x + 1).eval({"x": [1.0]})
    with pytest.raises(TypeError, match=r"'x'"):
        (x + 1).eval({x: [[1.0]]})


# --- shared variables --------------------------------------------------------------------------------------------
def test_shared_dtypes_and_names():
    assert sp.shared(0).dtype == "int64"
    assert sp.shared(0.0).dtype == "float64"
    assert sp.shared(True).dtype == "bool"
    f32 = sp.shared(np.zeros((2, 3), dtype=np.float32), name="w")
    assert f32.dtype == "float32" and f32.ndim == 2 and f32.name == "w"
    assert isinstance(f32, sp.SharedVariable)
    np.testing.assert_array_equal(f32.value, np.zeros((2, 3)))


def test_shared_copy_and_borrow_semantics():
    v = np.zeros(3)
    copied = sp.shared(v)
    borrowed = sp.shared(v, borrow=True)
    v[0] = 5.0
    assert copied.get_value()[0] == 0.0
    assert borrowed.get_value()[0] == 5.0
    got = copied.get_value()
    got[1] = 9.0
    assert copied.get_value()[1] == 0.0  # get_value() is a copy
    copied.get_value(borrow=True)[1] = 9.0
    assert copied.get_value()[1] == 9.0  # borrow=True is the internal array
    new = np.ones(3)
    copied.set_value(new)
    new[0] = 7.0
    assert copied.get_value()[0] == 1.0
    copied.set_value(new, borrow=True)
    new[2] = 8.0
    np.testing.assert_array_equal(copied.get_value(), [7.0, 1.0, 8.0])


def test_set_value_checks_and_casts():
    s = sp.shared(np.zeros(2), name="s")
    s.set_value([1, 2, 3])  # ints widen to float64; the shape may change
    assert s.get_value().dtype == np.float64 and s.get_value().tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(TypeError, match=r"shared variable 's': expected float64\[\?\] data, got str"):
        s.set_value("abc")
    with pytest.raises(TypeError, match=r"shared variable 's': expected a tensor of rank 1"):
        s.set_value([[1.0]])
    with pytest.raises(TypeError, match="dtype object"):
        s.set_value([object()])
    i = sp.shared(np.zeros(2, dtype=np.int32), name="i")
    with pytest.raises(TypeError, match=r"shared variable 'i': expected int32\[\?\], got float64 data"):
        i.set_value([1.5, 2.5])
    with pytest.raises(TypeError, match="out of the range of int32"):
        i.set_value([2**40])
    np.testing.assert_array_equal(i.get_value(), [0, 0])  # failed set_value leaves the value
    pinned = sp.shared(np.zeros(2), name="p", shape=(2,))
    with pytest.raises(ValueError, match=r"shared variable 'p': expected shape \(2,\), got \(3,\)"):
        pinned.set_value(np.zeros(3))


def test_shared_rejects_bad_values():
    with pytest.raises(TypeError, match="numeric"):
        sp.shared("abc")
    with pytest.raises(TypeError, match="complex128"):
        sp.shared(np.array([1j]))
    with pytest.raises(TypeError, match="cannot make an array from list"):
        sp.shared([[1.0], [2.0, 3.0]])
    with pytest.raises(TypeError, match="numeric"):
        sp.shared(None)
    with pytest.raises(TypeError, match="not a symbolic variable"):
        sp.shared(st.dvector("x"))
    with pytest.raises(ValueError, match=r"expected shape \(2,\), got \(3,\)"):
        sp.shared(np.zeros(3), shape=(2,))


def test_function_sees_set_value_between_calls():
    w = sp.shared(np.array([1.0, 2.0]), name="w")
    x = st.dvector("x")
    f = sp.function([x], st.dot(w, x))
    assert f([1.0, 1.0]) == 3.0
    w.set_value(np.array([10.0, 20.0, 30.0]))
    assert f([1.0, 1.0, 1.0]) == 60.0


# --- variables in Python contexts ----------------------------------------------------------------------------------
def test_equality_is_identity_and_eq_is_elementwise():
    x, y = st.dvectors("x", "y")
    assert x == x and not (x == y) and x != y
    assert (x == 1) is False and (x != 1) is True
    assert {x: 1, y: 2}[x] == 1
    assert x in [y, x] and (x + 1) not in [x]
    f = sp.function([x, y], st.eq(x, y))
    out = f([1.0, 2.0], [1.0, 3.0])
    assert out.dtype == np.bool_ and out.tolist() == [True, False]


def test_bool_len_and_iter():
    x = st.dvector("x")
    with pytest.raises(TypeError, match=r"truth value .* unknown.*input 'x'"):
        bool(x)
    with pytest.raises(TypeError, match="truth value"):
        if x > 0:
            pass
    with pytest.raises(TypeError, match="not known statically"):
        len(x)
    with pytest.raises(TypeError, match="not known statically"):
        list(x)
    with pytest.raises(TypeError):
        len(st.dscalar("s"))
    v = st.tensor("float64", shape=(3, None), name="v")
    assert len(v) == 3
    rows = list(v)
    assert len(rows) == 3 and all(r.ndim == 1 for r in rows)
    f = sp.function([v], rows[::-1])
    data = np.arange(6.0).reshape(3, 2)
    for got, want in zip(f(data), data[::-1]):
        np.testing.assert_array_equal(got, want)


def test_numpy_array_on_the_left_builds_a_graph():
    x = st.dvector("x")
    expr = np.array([1.0, 2.0]) * x
    assert isinstance(expr, sp.TensorVariable)
    np.testing.assert_array_equal(sp.function([x], expr)([3.0, 4.0]), [3.0, 8.0])


# --- nothing crashes the interpreter -------------------------------------------------------------------------------
_BAD_INPUT_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, sympile as sp, sympile.tensor as st
    backend = sys.argv[1]
    x, y = st.dvectors('x', 'y')
    n = st.ivector('n')
    s = sp.shared(np.zeros(2), name='s')
    f = sp.function([x, y, n], [x * y + n, (x[n]).sum()], updates=[(s, s + x)], backend=backend)
    good = ([1.0, 2.0], [3.0, 4.0], [0, 1])
    bad_calls = [
        ((), {}), (good + ([1],), {}), (good[:2], {'m': [1]}), (([[1.0]], [1.0], [0]), {}),
        (('ab', [1.0], [0]), {}), (([object()], [1.0], [0]), {}), (([1.0, 2.0], [1.0, 2.0, 3.0], [0]), {}),
        (([1.0], [1.0], [0.5]), {}), (([1.0], [1.0], [2**40]), {}), (([1.0], [1.0], [5]), {}),
        (([np.nan], [np.inf], [0]), {}), (([], [], []), {}), (([1e308], [1e308], [0]), {}),
        (([1.0, 2.0], [1.0, 2.0], [[0]]), {}), ((None, None, None), {}), (([[1.0], [2.0, 3.0]], [1.0], [0]), {}),
    ]
    unexpected = []
    for args, kwargs in bad_calls:
        try:
            f(*args, **kwargs)
        except (TypeError, ValueError, IndexError):
            pass
        except Exception as exc:  # anything else is a bug in how bad input is reported
            unexpected.append(f'{args!r}: {type(exc).__name__}: {exc}')
    assert s.get_value().shape == (2,)
    print('UNEXPECTED' if unexpected else 'CLEAN', *unexpected, sep='\\n')
    """
)


@pytest.mark.parametrize("backend", sorted(set(BACKENDS) - {"cuda"}))  # cuda needs a GPU: tests/test_cuda_ptx.py
def test_bad_input_never_crashes_the_interpreter(backend, tmp_path):
    script = tmp_path / "bad_input.py"
    script.write_text(_BAD_INPUT_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), backend], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("CLEAN"), proc.stdout
