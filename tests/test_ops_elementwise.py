"""Every elementwise op and Python operator of sympile.tensor against numpy: values, dtypes, shapes.

numpy 2's promotion rules (NEP 50) are the reference: a float32 tensor times a Python float stays float32,
``int8 + 300`` raises. Where numpy raises a TypeError for a dtype (``~float``, ``bool - bool``), sympile raises a
TypeError when the node is built.
"""

from __future__ import annotations

import itertools
import operator

import numpy as np
import pytest
from oracle import ALL_DTYPES, FLOAT_DTYPES, INT_DTYPES, NP, assert_same, check, layouts, run, sample, symbolic_like

import sympile as sp
import sympile.tensor as st

UNARY = [
    "exp", "exp2", "log", "log2", "log10", "log1p", "expm1", "sqrt", "sqr", "abs", "sign", "neg", "reciprocal",
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh",
    "sigmoid", "softplus", "erf", "erfc", "floor", "ceil", "round", "trunc", "isnan", "isinf", "invert",
]  # fmt: skip
BINARY = [
    "add", "sub", "mul", "true_div", "floor_div", "mod", "pow", "power", "maximum", "minimum", "arctan2",
    "eq", "neq", "lt", "le", "gt", "ge", "and_", "or_", "xor",
]  # fmt: skip
# ops computed by sympile's own code rather than by the numpy function itself: compared within a few ulps of an
# extended-precision reference (float16 results of int8 inputs get float16's precision)
APPROX = {"sigmoid", "softplus"}
RTOL = {"float16": 2e-3, "float32": 1e-6, "float64": 1e-15}

SPECIAL = [-np.inf, -1e6, -30.0, -2.5, -1.0, -0.5, -0.0, 0.0, 1e-8, 0.5, 1.0, 2.5, 30.0, 1e6, np.inf, np.nan]


def unary_data(dtype: str) -> np.ndarray:
    """Edge values of the dtype (extremes, zero, nan/inf for floats) plus random ones, as a 2-d array."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return np.array([[True, False, True], [False, False, True]])
    if dt.kind in "iu":
        info = np.iinfo(dt)
        edges = [info.min, info.min + 1, 0, 1, 2, 3, info.max - 1, info.max]
        return np.concatenate([np.array(edges, dtype=dt), sample(10, dt, seed=1)]).reshape(3, 6)
    vals = np.concatenate([np.array(SPECIAL), sample(8, "float64", seed=2)]).astype(dt)
    return vals.reshape(4, 6)


def _numpy_or_error(fn, *args):
    """numpy's value, or the TypeError / OverflowError numpy raises for these dtypes."""
    try:
        with np.errstate(all="ignore"):
            return fn(*args), None
    except (TypeError, OverflowError) as exc:
        return None, exc


def _check_or_type_error(expr, *arrays, rtol=0.0):
    want, err = _numpy_or_error(expr, NP, *arrays)
    if err is not None:
        expected = OverflowError if isinstance(err, OverflowError) else TypeError
        with pytest.raises(expected):  # the same kind of error as numpy's, raised when the node is built
            expr(st, *(symbolic_like(a) for a in arrays))
        return
    check(expr, *arrays, rtol=rtol, atol=0.0)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("name", UNARY)
def test_unary_op_matches_numpy(name, dtype):
    data = unary_data(dtype)
    out_dtype = _numpy_or_error(getattr(NP, name), data)[0]
    rtol = RTOL.get(np.asarray(out_dtype).dtype.name, 0.0) if name in APPROX else 0.0
    _check_or_type_error(lambda m, x: getattr(m, name)(x), data, rtol=rtol)


def binary_data(dtype: str, seed: int, shape=(3, 4), nonneg: bool = False) -> np.ndarray:
    a = sample(shape, dtype, seed=seed)
    if nonneg and np.dtype(dtype).kind in "iu":
        a = np.abs(a)  # integers to negative integer powers raise in numpy (value-dependent)
    return a


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("dt_a,dt_b", list(itertools.product(ALL_DTYPES, repeat=2)))
def test_binary_op_matches_numpy_for_each_dtype_pair(name, dt_a, dt_b):
    a = binary_data(dt_a, seed=3)
    b = binary_data(dt_b, seed=4, shape=(4,), nonneg=name in ("pow", "power"))
    _check_or_type_error(lambda m, x, y: getattr(m, name)(x, y), a, b)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_cast_to_every_dtype(dtype):
    for src in ALL_DTYPES:
        data = sample((2, 3), src, seed=5)
        check(lambda m, x: m.cast(x, dtype), data)
    x = st.dvector("x")
    assert st.cast(x, "float64") is x  # a cast to the same dtype is no node at all
    check(lambda m, x: x.astype(dtype), sample(4, "float64", seed=6))


def test_cast_float_to_int_truncates_toward_zero():
    check(lambda m, x: m.cast(x, "int32"), np.array([-2.7, -0.5, 0.5, 2.7, 1e3]))


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_clip_and_where(dtype):
    x = sample((3, 4), dtype, seed=7)
    lo, hi = sample((4,), dtype, seed=8), sample((3, 1), dtype, seed=9)
    _check_or_type_error(lambda m, x, lo, hi: m.clip(x, lo, hi), x, lo, hi)
    _check_or_type_error(lambda m, x: m.clip(x, 0, 2), x)
    cond = sample((3, 1), "bool", seed=10)
    for other in ALL_DTYPES:
        y = sample((4,), other, seed=11)
        check(lambda m, c, x, y: m.where(c, x, y), cond, x, y)
        check(lambda m, c, x, y: m.switch(c, x, y), cond, x, y)
    check(lambda m, x: m.where(m.gt(x, 1), x, 0), x)
    check(lambda m, x: m.where(m.gt(x, 1), x, 0.5), x)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "float32", "float64"])
def test_clip_with_a_missing_bound(dtype):
    x = sample((3, 4), dtype, seed=22)
    for lo, hi in [(None, 2), (None, 2.5), (1, None), (0.5, None), (None, None)]:
        check(lambda m, v, lo=lo, hi=hi: m.clip(v, lo, hi), x)
        check(lambda m, v, lo=lo, hi=hi: v.clip(lo, hi), x)


def test_where_with_non_bool_condition_follows_numpy():
    check(lambda m, c, x: m.where(c, x, -x), np.array([0.0, 2.0, -1.0, np.nan]), np.arange(4.0))
    check(lambda m, c, x: m.where(c, x, -x), np.array([0, 3, 0, 1], dtype="int8"), np.arange(4.0))


def test_pow_negative_integer_exponent_raises_at_run_time_like_numpy():
    with pytest.raises(ValueError, match="negative"):
        np.power(np.arange(3), np.array([-1, 1, 1]))
    x, y = st.lvectors("x", "y")
    f = sp.function([x, y], x**y)
    with pytest.raises(ValueError, match="negative"):
        f(np.arange(3), np.array([-1, 1, 1]))


def test_reciprocal_of_integers_is_integer_like_numpy():
    # numpy's reciprocal keeps integer dtypes (1 // x, 0 for |x| > 1): sympile follows numpy
    check(lambda m, x: m.reciprocal(x), np.array([1, 2, -1, 5], dtype="int32"))


# --- Python operators -------------------------------------------------------------------------------------------
BINARY_OPERATORS = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "//": operator.floordiv,
    "%": operator.mod, "**": operator.pow, "&": operator.and_, "|": operator.or_, "^": operator.xor,
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
UNARY_OPERATORS = {"-x": operator.neg, "abs(x)": abs, "~x": operator.invert, "+x": operator.pos}
PY_SCALARS = [True, 0, 2, -3, 2.5, -0.5]


@pytest.mark.parametrize("sym", list(BINARY_OPERATORS))
@pytest.mark.parametrize("dt_a,dt_b", list(itertools.product(ALL_DTYPES, repeat=2)))
def test_binary_operator_matches_numpy(sym, dt_a, dt_b):
    fn = BINARY_OPERATORS[sym]
    a = binary_data(dt_a, seed=12, shape=(2, 1, 3))
    b = binary_data(dt_b, seed=13, shape=(4, 1), nonneg=sym == "**")
    _check_or_type_error(lambda m, x, y: fn(x, y), a, b)


@pytest.mark.parametrize("sym", list(BINARY_OPERATORS))
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_operator_with_python_scalar_follows_nep50(sym, dtype):
    """A Python scalar is 'weak': it takes the tensor's dtype when its kind allows (NEP 50)."""
    fn = BINARY_OPERATORS[sym]
    a = binary_data(dtype, seed=14, shape=(2, 3), nonneg=sym == "**")
    for s in PY_SCALARS:
        if sym == "**" and isinstance(s, int) and s < 0:
            continue
        if sym == "**" and dtype == "bool" and s == 2:
            # numpy quirk: the ** operator turns bool ** 2 into square (int8); np.power gives int64, as we do
            assert check(lambda m, x: m.power(x, 2), a).dtype == np.int64
            continue
        _check_or_type_error(lambda m, x, s=s: fn(x, s), a)
        _check_or_type_error(lambda m, x, s=s: fn(s, x), a)  # reflected: 2 - x, 2.5 / x


@pytest.mark.parametrize("sym", list(UNARY_OPERATORS))
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_unary_operator_matches_numpy(sym, dtype):
    fn = UNARY_OPERATORS[sym]
    if sym == "+x" and dtype == "bool":
        # known difference: numpy rejects +bool_array; sympile's unary + returns the variable unchanged
        x = st.tensor(dtype="bool", shape=(None,))
        assert +x is x
        return
    _check_or_type_error(lambda m, x: fn(x), unary_data(dtype))


def test_nep50_examples():
    x32 = np.array([1.5, -2.0], dtype="float32")
    assert check(lambda m, x: x * 2.5, x32).dtype == np.float32
    assert check(lambda m, x: 2.5 * x, x32).dtype == np.float32
    assert check(lambda m, x: x * np.float64(2.5), x32).dtype == np.float64  # numpy scalars are not weak
    assert check(lambda m, x: x * np.float32(2.5), x32).dtype == np.float32
    i8 = np.array([1, -2, 100], dtype="int8")
    assert check(lambda m, x: x + 1, i8).dtype == np.int8
    assert check(lambda m, x: x + 1.5, i8).dtype == np.float64
    assert check(lambda m, x: x * True, i8).dtype == np.int8
    assert check(lambda m, x: x + 127, i8).dtype == np.int8  # wraps, like numpy
    b = np.array([True, False])
    assert check(lambda m, x: x + 1, b).dtype == np.int64
    assert check(lambda m, x: m.exp(x), i8).dtype == np.float16  # numpy's smallest float that holds int8
    u8 = np.array([1, 200], dtype="uint8")
    assert check(lambda m, x: x * 2, u8).dtype == np.uint8


def test_numpy_operands_on_the_left_defer_to_the_variable():
    f32 = np.array([-1.5, 0.0, 2.5], dtype="float32")
    c = np.array([2.0, 3.0, 4.0])
    assert check(lambda m, x: np.float32(2) * x, f32).dtype == np.float32
    assert check(lambda m, x: np.float64(2) * x, f32).dtype == np.float64
    check(lambda m, x: (c * x, c < x, c**x, c @ x, c - x, c // x), f32)
    check(lambda m, x: (x + [1, 2, 3], x * [1.5, 2.0, 3.0]), np.array([-3, 0, 5], dtype="int8"))


@pytest.mark.parametrize("dtype,value", [("int8", 300), ("int8", -129), ("uint8", -1), ("uint8", 256)])
def test_python_int_out_of_range_raises_like_numpy(dtype, value):
    with pytest.raises(OverflowError):
        np.ones(2, dtype=dtype) + value
    x = st.tensor(dtype=dtype, shape=(None,), name="x")
    with pytest.raises((OverflowError, TypeError), match=str(value)):
        x + value
    with pytest.raises((OverflowError, TypeError), match=str(value)):
        value * x


def test_python_int_beyond_int64_is_rejected():
    x = st.lvector("x")
    with pytest.raises((OverflowError, TypeError)):
        x + 2**70


# --- broadcasting, empty arrays, layouts ------------------------------------------------------------------------
BROADCAST_SHAPES = [
    ((3, 1), (4,)),
    ((2, 3, 4), (3, 1)),
    ((), (2, 3)),
    ((1, 1), (5, 1, 3)),
    ((0, 3), (3,)),
    ((0,), (1,)),
    ((2, 0, 4), (1, 1, 4)),
    ((0,), ()),
]


@pytest.mark.parametrize("sa,sb", BROADCAST_SHAPES)
@pytest.mark.parametrize("static", [False, True])
def test_broadcasting_and_empty_arrays(sa, sb, static):
    a, b = sample(sa, "float64", seed=15), sample(sb, "float32", seed=16)
    check(lambda m, x, y: x * y + m.exp(y), a, b, static=static)
    check(lambda m, x, y: m.where(m.gt(x, 0), y, x), a, b, static=static)
    check(lambda m, x, y: m.maximum(x, y) - 1, b, a, static=static)


def test_static_shape_of_broadcast_result():
    x = st.tensor(dtype="float64", shape=(None, 1, 3))
    y = st.tensor(dtype="float32", shape=(4, 1))
    z = x + y
    assert z.static_shape == (None, 4, 3) and z.dtype == "float64"
    assert (x + 1).static_shape == (None, 1, 3)


def test_incompatible_static_shapes_raise_at_build_time_naming_shapes_and_line():
    x = st.tensor(dtype="float64", shape=(3,), name="x")
    y = st.tensor(dtype="float64", shape=(4,), name="y")
    with pytest.raises(ValueError) as info:
        x + y  # the line the error names
    line = info.traceback[0].lineno + 1  # pytest's line numbers are 0-based
    msg = str(info.value)
    assert "(3,)" in msg and "(4,)" in msg
    assert f"test_ops_elementwise.py:{line}" in msg
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        st.maximum(st.tensor(dtype="float64", shape=(2, 3)), st.tensor(dtype="int8", shape=(4,)))


def test_shapes_that_do_not_broadcast_at_run_time_raise_naming_the_node():
    x, y = st.dvectors("x", "y")
    f = sp.function([x, y], x + y)
    with pytest.raises(ValueError, match=r"add .*test_ops_elementwise\.py"):
        f(np.ones(3), np.ones(4))


@pytest.mark.parametrize("layout", ["C", "F", "strided", "negative"])
def test_non_contiguous_inputs(layout):
    a = sample((3, 4), "float64", seed=17)
    b = sample((3, 4), "int16", seed=18)
    la, lb = layouts(a)[layout], layouts(b)[layout]
    assert np.array_equal(la, a) and np.array_equal(lb, b)
    check(lambda m, x, y: m.sin(x) * y - y // 2, la, lb)
    check(lambda m, x, y: m.where(m.gt(x, 0), x, y), la.T, lb.T)
    check(lambda m, x: m.sqrt(m.abs(x)) + x[::-1], la)


def test_elementwise_on_scalars_and_weak_scalar_only_graphs():
    check(lambda m, x, y: m.arctan2(x, y) * 2, np.float64(0.5), np.float64(-1.5))
    check(lambda m, x: m.exp(x) + m.exp(2.0), np.float32(1.5))  # exp of a Python float is float64


def test_sigmoid_and_softplus_are_accurate_over_the_whole_range():
    x = np.concatenate([np.linspace(-745, 745, 301), np.linspace(-5, 5, 101), [-1e300, 1e300]])
    for dtype in FLOAT_DTYPES:
        with np.errstate(all="ignore"):
            xs = x.astype(dtype)  # +-1e300 become +-inf in float32
            check(lambda m, v: m.sigmoid(v), xs, rtol=RTOL[dtype] * 4)
            check(lambda m, v: m.softplus(v), xs, rtol=RTOL[dtype] * 4)
    got = check(lambda m, v: m.sigmoid(v), np.array([-1000.0, 0.0, 1000.0, np.nan]), rtol=1e-15)
    assert got[0] == 0.0 and got[1] == 0.5 and got[2] == 1.0 and np.isnan(got[3])


def test_nn_sigmoid_aliases():
    assert st.nnet.sigmoid is st.sigmoid and st.expit is st.sigmoid
    check(lambda m, v: m.relu(v), np.array([-1.5, 0.0, 2.0]))
    check(lambda m, v: m.relu(v), np.array([-1, 0, 2], dtype="int8"))


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_complex_dtypes_are_rejected_clearly(dtype):
    with pytest.raises(TypeError, match="complex"):
        st.tensor(dtype=dtype, shape=(None,))
    with pytest.raises(TypeError, match="complex"):
        st.constant(np.ones(2, dtype=dtype))
    with pytest.raises(TypeError, match="complex"):
        st.dvector("x") + np.ones(2, dtype=dtype)
    with pytest.raises(TypeError, match="complex"):
        st.dvector("x") * 1j
    with pytest.raises(TypeError, match="complex"):
        st.cast(st.dvector("x"), dtype)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_integer_division_by_zero_gives_numpy_values(dtype):
    a = np.array([5, -3, 0, 7], dtype=dtype) if dtype != "uint8" else np.array([5, 3, 0, 7], dtype=dtype)
    b = np.zeros(4, dtype=dtype)
    check(lambda m, x, y: x // y, a, b)
    check(lambda m, x, y: x % y, a, b)
    check(lambda m, x, y: x / y, a, b)


def test_result_is_same_with_and_without_optimizer():
    a, b = sample((3, 4), "float64", seed=19), sample((4,), "float64", seed=20)
    _, f1 = run(lambda x, y: st.exp(x) * y + st.exp(x), a, b, optimize=True)
    _, f0 = run(lambda x, y: st.exp(x) * y + st.exp(x), a, b, optimize=False)
    assert_same(f1, f0)


ALIASES = {
    "power": "pow", "switch": "where", "true_divide": "true_div", "divide": "true_div", "floor_divide": "floor_div",
    "int_div": "floor_div", "remainder": "mod", "absolute": "abs", "abs_": "abs", "negative": "neg",
    "square": "sqr", "subtract": "sub", "multiply": "mul", "bitwise_and": "and_", "bitwise_or": "or_",
    "bitwise_xor": "xor", "bitwise_not": "invert", "expit": "sigmoid", "round_half_to_even": "round",
}  # fmt: skip


@pytest.mark.parametrize("alias,name", ALIASES.items())
def test_numpy_and_theano_spellings_are_the_same_ops(alias, name):
    assert getattr(st, alias) is getattr(st, name)


def test_method_forms_of_elementwise_ops():
    a = sample((3, 4), "float32", seed=21)
    check(lambda m, x: (x.clip(-1, 1), x.round(), x.astype("int16"), x.dot(x.T)), a)
    # numpy arrays have no .exp/.log/.sqrt methods; sympile's variables do (Theano's)
    _, got = run(lambda x: [x.exp(), abs(x).log(), abs(x).sqrt()], a)
    for g, w in zip(got, [np.exp(a), np.log(np.abs(a)), np.sqrt(np.abs(a))]):
        assert_same(g, w)


def test_arity_errors_name_the_op():
    with pytest.raises(TypeError, match="exp takes 1"):
        st.exp(st.dvector(), st.dvector())
    with pytest.raises(TypeError, match="arctan2 takes 2"):
        st.arctan2(st.dvector())
    with pytest.raises(TypeError, match="a_max"):
        st.clip(st.dvector(), 0)
    with pytest.raises(TypeError, match="str"):
        st.exp("x")
