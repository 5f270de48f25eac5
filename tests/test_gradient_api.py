"""The gradient API: errors, disconnected inputs, shared variables, higher derivatives, Lop/Rop, training."""

import warnings

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st
from sympile.compiler.gradients import MissingGradientError
from sympile.compiler.optable import OPS, defop
from sympile.gradient import (
    DisconnectedInputError,
    GradientError,
    Lop,
    Rop,
    disconnected_grad,
    hessian,
    jacobian,
    verify_grad,
    zero_grad,
)


def test_cost_must_be_a_float_scalar():
    x = st.dvector("x")
    with pytest.raises(TypeError, match=r"cost must be a scalar, got float64\[\?\].*test_gradient_api.py"):
        sp.grad(x * 2, x)
    n = st.lscalar("n")
    with pytest.raises(TypeError, match="float scalar, got int64"):
        sp.grad(n * 2, x)


def test_integer_wrt_is_an_error_naming_it():
    i = st.ivector("idx")
    x = st.dvector("x")
    with pytest.raises(TypeError, match="'idx'.*int32.*float variables only"):
        sp.grad(x[i].sum(), [x, i])
    with pytest.raises(TypeError, match="symbolic variable"):
        sp.grad(x.sum(), [x, 3.0])


def test_disconnected_inputs_modes():
    x, y = st.dvector("x"), st.fmatrix("y")
    cost = (x**2).sum()
    with pytest.raises(DisconnectedInputError, match="'y'"):
        sp.grad(cost, [x, y])
    with pytest.warns(UserWarning, match="does not depend on 'y'"):
        gx, gy = sp.grad(cost, [x, y], disconnected_inputs="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gx, gy = sp.grad(cost, [x, y], disconnected_inputs="ignore")
    assert gy.dtype == "float32" and gy.ndim == 2
    f = sp.function([x, y], [gx, gy])
    rx, ry = f([1.0, 2.0], np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(rx, [2.0, 4.0])
    assert ry.dtype == np.float32 and ry.shape == (2, 3) and not ry.any()
    with pytest.raises(ValueError, match="disconnected_inputs"):
        sp.grad(cost, x, disconnected_inputs="nope")


def test_structure_of_the_result_follows_wrt():
    x, y = st.dscalars("x", "y")
    assert isinstance(sp.grad(x * y, x), st.TensorVariable)
    assert len(sp.grad(x * y, [x, y])) == 2
    assert len(sp.grad(x * y, (x,))) == 1


def test_stop_gradients():
    x = st.dvector("x")
    with pytest.raises(DisconnectedInputError):
        sp.grad(disconnected_grad(x).sum(), x)
    g = sp.grad(zero_grad(x).sum(), x)  # connected, zero
    np.testing.assert_array_equal(g.eval({x: [1.0, 2.0]}), [0.0, 0.0])
    y = x**2
    g = sp.grad((y * x).sum(), x, consider_constant=[y])
    np.testing.assert_array_equal(g.eval({x: [1.0, 3.0]}), [1.0, 9.0])
    with pytest.raises(DisconnectedInputError):
        sp.grad((y * 2).sum(), x, consider_constant=[y])


def test_integer_paths_give_zero_gradients():
    x = st.dvector("x")
    g = sp.grad(st.floor(x).sum() + st.cast(st.argmax(x), "float64"), x)
    np.testing.assert_array_equal(g.eval({x: [0.5, 2.5]}), [0.0, 0.0])
    g = sp.grad(x[st.argmax(x)], x)  # the index is computed from x: only the picked element moves the cost
    np.testing.assert_array_equal(g.eval({x: [0.5, 2.5, 1.0]}), [0.0, 1.0, 0.0])


def test_op_without_a_rule_is_a_clear_error():
    name = "test_op_without_grad"
    defop(name, 1, lambda inputs, attrs: inputs[0].type, lambda attrs, x: x, "elemwise")
    try:
        from sympile.variable import apply

        x = st.dvector("x")
        y = apply(name, x)
        with pytest.raises(MissingGradientError, match=f"'{name}'.*test_gradient_api.py"):
            sp.grad(y.sum(), x)
    finally:
        del OPS[name]


def test_shared_variables_and_float32_gradients():
    w = sp.shared(np.array([1.0, -2.0], dtype=np.float32), name="w")
    x = st.fmatrix("x")
    cost = st.mean(st.softplus(st.dot(x, w)) ** 2) + 0.1 * st.var(w) + st.max(st.softmax(x * w))
    g = sp.grad(cost, w)
    assert g.dtype == "float32"
    xv = np.array([[0.5, 1.0], [2.0, -1.0], [0.1, 0.2]], dtype=np.float32)
    got = sp.function([x], g)(xv)
    assert got.dtype == np.float32
    # against float64 finite differences of the same cost
    f = sp.function([x], cost)
    wv = w.get_value().astype(np.float64)
    num = []
    for i in range(2):
        d = np.zeros(2)
        d[i] = 1e-3
        w.set_value((wv + d).astype(np.float32))
        hi = float(f(xv))
        w.set_value((wv - d).astype(np.float32))
        lo = float(f(xv))
        num.append((hi - lo) / 2e-3)
    np.testing.assert_allclose(got, num, rtol=2e-2, atol=2e-3)


def test_runtime_broadcasting_is_undone():
    # b's first dimension is unknown statically and 1 at run time: its gradient sums over the broadcast axis
    a, b = st.dmatrices("a", "b")
    ga, gb = sp.grad((a * b).sum(), [a, b])
    f = sp.function([a, b], [ga, gb])
    av, bv = np.arange(6.0).reshape(2, 3), np.array([[1.0, 2.0, 3.0]])
    ra, rb = f(av, bv)
    np.testing.assert_array_equal(ra, np.broadcast_to(bv, (2, 3)))
    np.testing.assert_array_equal(rb, av.sum(0, keepdims=True))
    # and the same function on equal shapes
    ra, rb = f(av, av)
    np.testing.assert_array_equal(rb, av)
    # second derivative through the run-time sum
    gg = sp.grad((gb**2).sum(), a)
    np.testing.assert_allclose(gg.eval({a: av, b: bv}), np.broadcast_to(2 * av.sum(0, keepdims=True), (2, 3)))


def test_second_derivatives():
    x = st.dscalar("x")
    y = st.sin(x) * x**3
    d1 = sp.grad(y, x)
    d2 = sp.grad(d1, x)
    d3 = sp.grad(d2, x)
    f = sp.function([x], [d1, d2, d3])
    v = 0.7
    want = [
        np.cos(v) * v**3 + 3 * v**2 * np.sin(v),
        -np.sin(v) * v**3 + 6 * v**2 * np.cos(v) + 6 * v * np.sin(v),
        -np.cos(v) * v**3 - 9 * v**2 * np.sin(v) + 18 * v * np.cos(v) + 6 * np.sin(v),
    ]
    np.testing.assert_allclose(f(v), want, rtol=1e-12)


def test_gradient_of_gradient_verify_grad():
    rng = np.random.default_rng(3)

    def inner_grad(w, x):
        cost = st.logsumexp(st.tanh(st.dot(x, w)), axis=1).sum() + st.prod(w[:2], axis=0).sum()
        return sp.grad(cost, w)

    verify_grad(inner_grad, [rng.normal(size=(3, 2)), rng.normal(size=(4, 3))], rng=rng)


def test_jacobian_and_hessian_against_numpy():
    x = st.tensor("float64", shape=(3,), name="x")
    w = np.array([[1.0, 2.0, 0.5], [-1.0, 0.3, 2.0]])
    y = st.tanh(st.dot(w, x))
    xv = np.array([0.2, -0.4, 0.9])
    jac = jacobian(y, x).eval({x: xv})
    yv = np.tanh(w @ xv)
    np.testing.assert_allclose(jac, (1 - yv**2)[:, None] * w)
    # x^T A x + sum(x^3): H = A + A^T + diag(6 x)
    a = np.arange(9.0).reshape(3, 3)
    cost = st.dot(x, st.dot(a, x)) + (x**3).sum()
    hess = hessian(cost, x).eval({x: xv})
    np.testing.assert_allclose(hess, a + a.T + np.diag(6 * xv))
    # matrix-shaped expression and wrt: shape expression.shape + wrt.shape
    m = st.tensor("float64", shape=(2, 2), name="m")
    jm = jacobian(m**2, m).eval({m: [[1.0, 2.0], [3.0, 4.0]]})
    assert jm.shape == (2, 2, 2, 2)
    np.testing.assert_allclose(jm.reshape(4, 4), np.diag([2.0, 4.0, 6.0, 8.0]))


def test_jacobian_needs_a_static_length():
    x = st.dvector("x")
    with pytest.raises(ValueError, match="not known statically"):
        jacobian(x**2, x)
    s = jacobian((x**2).sum(), x)  # a scalar expression is just its gradient
    np.testing.assert_allclose(s.eval({x: [1.0, 2.0]}), [2.0, 4.0])


def test_lop_and_rop_against_the_jacobian():
    x = st.tensor("float64", shape=(3,), name="x")
    w = st.dmatrix("w")
    y = st.sin(st.dot(w, x)) * x[:2]
    u, v = st.dvector("u"), st.dvector("v")
    lop = Lop(y, x, u)
    rop = Rop(y, x, v)
    jac = jacobian(y, x)
    f = sp.function([x, w, u, v], [lop, rop, jac])
    rng = np.random.default_rng(0)
    xv, wv, uv, vv = rng.normal(size=3), rng.normal(size=(2, 3)), rng.normal(size=2), rng.normal(size=3)
    rl, rr, rj = f(xv, wv, uv, vv)
    np.testing.assert_allclose(rl, uv @ rj)
    np.testing.assert_allclose(rr, rj @ vv)
    # Rop with respect to a matrix: d/dt y(w + t dw) at t = 0
    dw = st.dmatrix("dw")
    dwv = rng.normal(size=(2, 3))
    rw = Rop(y, w, dw).eval({x: xv, w: wv, dw: dwv})
    np.testing.assert_allclose(rw, np.cos(wv @ xv) * (dwv @ xv) * xv[:2])


def test_rop_with_respect_to_several_variables():
    a, b = st.dvectors("a", "b")
    da, db = st.dvectors("da", "db")
    y = a * st.exp(b)
    r = Rop(y, [a, b], [da, db])
    f = sp.function([a, b, da, db], r)
    av, bv, dav, dbv = [np.array([0.5, -1.0]) * k for k in (1, 2, 3, 4)]
    np.testing.assert_allclose(f(av, bv, dav, dbv), dav * np.exp(bv) + av * np.exp(bv) * dbv)


def test_known_grads():
    x = st.dvector("x")
    h = st.tanh(x)
    g = sp.grad(None, x, known_grads={h: st.ones_like(h) * 2.0})
    xv = np.array([0.3, -0.2])
    np.testing.assert_allclose(g.eval({x: xv}), 2 * (1 - np.tanh(xv) ** 2))


def test_verify_grad_reports_the_largest_error():
    with pytest.raises(GradientError, match="input 0.*largest error") as info:
        verify_grad(lambda v: zero_grad(v) * v, [np.array([1.0, 2.0, 3.0])], rng=np.random.default_rng(0))
    err = info.value
    assert err.arg == 0 and err.abs_err > 0.1


def test_sgd_through_shared_variables():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(64, 3))
    true_w = np.array([1.5, -2.0, 0.5])
    ys = xs @ true_w + 0.3
    x, y = st.dmatrix("x"), st.dvector("y")
    w = sp.shared(np.zeros(3), name="w")
    b = sp.shared(0.0, name="b")
    loss = st.mean((st.dot(x, w) + b - y) ** 2)
    gw, gb = sp.grad(loss, [w, b])
    step = sp.function([x, y], loss, updates=[(w, w - 0.1 * gw), (b, b - 0.1 * gb)])
    # the first step equals numpy's gradient step
    first = step(xs, ys)
    resid = -ys
    np.testing.assert_allclose(first, np.mean(resid**2))
    np.testing.assert_allclose(w.get_value(), -0.1 * 2 * xs.T @ resid / len(ys))
    for _ in range(200):
        last = step(xs, ys)
    assert last < 1e-6
    np.testing.assert_allclose(w.get_value(), true_w, atol=1e-3)
    np.testing.assert_allclose(b.get_value(), 0.3, atol=1e-3)


def _numeric_grad(f, values, k, eps=1e-6):
    """Central differences of the scalar f(*values) with respect to values[k]."""
    x = values[k]
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        for sign in (1, -1):
            moved = x.copy()
            moved[i] += sign * eps
            out[i] += sign * float(f(*values[:k], moved, *values[k + 1 :])) / (2 * eps)
    return out


@pytest.mark.parametrize(
    "fn",
    [st.add, st.sub, st.mul, lambda a, b: a / (2 + b), lambda a, b: (a + 2) ** b, st.maximum, st.arctan2,
     lambda a, b: st.where(a > 0, a, b), lambda a, b: st.clip(a, b - 0.5, b + 0.5)],
)  # fmt: skip
@pytest.mark.parametrize("b_shape", [(1, 3), (2, 1), (1, 1), (2, 3)])
def test_gradients_of_inputs_broadcast_at_run_time(fn, b_shape):
    # static shapes say nothing: the size-1 dimensions are only known when the function runs
    a, b = st.dmatrices("a", "b")
    cost = (fn(a, b) * st.arange(1.0, 4.0)[: fn(a, b).shape[-1]]).sum()
    rng = np.random.default_rng(1)
    values = [rng.uniform(-1, 1, (2, 3)), rng.uniform(-1, 1, b_shape)]
    f = sp.function([a, b], cost)
    grads = sp.function([a, b], sp.grad(cost, [a, b]))(*values)
    for k in range(2):
        assert grads[k].shape == values[k].shape
        np.testing.assert_allclose(grads[k], _numeric_grad(f, values, k), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "fn",
    [st.exp, st.tanh, st.sigmoid, st.softplus, st.erf, st.sqrt, st.log, lambda v: v**2.5, lambda v: st.maximum(v, 1),
     lambda v: st.prod(v), lambda v: st.var(v), lambda v: st.std(v, axis=0), lambda v: st.max(v),
     lambda v: st.logsumexp(v), lambda v: st.softmax(v), lambda v: st.log_softmax(v), lambda v: v.mean(),
     lambda v: st.dot(v, v), lambda v: v[[0, 0, 2]], lambda v: st.set_subtensor(v[1:], v[:2] * 2)],
)  # fmt: skip
def test_float32_gradients_stay_float32(fn):
    v = st.fvector("v")
    g = sp.grad(st.sum(fn(v) * np.float32(1.5)), v)
    assert g.dtype == "float32"
    v64 = st.dvector("v64")
    g64 = sp.grad(st.sum(fn(v64) * 1.5), v64)
    x = np.array([0.5, 1.25, 2.0])
    got = g.eval({v: x.astype(np.float32)})
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, g64.eval({v64: x}), rtol=1e-5, atol=1e-6)
