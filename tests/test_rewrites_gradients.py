"""The optimizer on gradient graphs: shapes read from the inputs instead of computed intermediates, no-op
``sum_to`` removed, allocs absorbed by broadcasting, and the classic training graphs (logistic regression,
softmax cross-entropy MLP) computed stably, checked against numpy oracles and ``optimize=False``."""

from __future__ import annotations

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st
from sympile.compiler.graph import input_node, make_node, toposort
from sympile.compiler.rules.shapes import Bcast, Dim, bcast, dim_term

RNG = np.random.default_rng(1)


def compile_both(inputs, outputs):
    f = sp.function(inputs, outputs, on_unused_input="ignore")
    g = sp.function(inputs, outputs, optimize=False, on_unused_input="ignore")
    return f, g


def fired(f) -> list[str]:
    return [r.rule for r in f.rewrites]


def graph_nodes(f) -> list:
    return toposort(f.graph)


def assert_all_close(got, want, rtol=1e-10):
    for a, b in zip(got, want):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --- dimension terms ------------------------------------------------------------------------------------------
def test_dim_terms_trace_through_ops_to_the_inputs():
    x = input_node("float64", (None, None), name="x")
    v = input_node("float64", (None,), name="v")
    w = input_node("float64", (None, None), name="w")
    e = make_node("exp", [make_node("add", [x, v])])
    assert dim_term(e, 0) == Dim(x, 0)
    assert dim_term(e, 1) == Bcast((Dim(x, 1), Dim(v, 0)))
    assert dim_term(e, 1) == Bcast((Dim(v, 0), Dim(x, 1)))  # a set: order does not matter
    d = make_node("dot", [e, w])
    assert [dim_term(d, k) for k in range(2)] == [Dim(x, 0), Dim(w, 1)]
    t = make_node("dimshuffle", [d], new_order=(1, "x", 0))
    assert [dim_term(t, k) for k in range(3)] == [Dim(w, 1), 1, Dim(x, 0)]
    s = make_node("sum", [e], axis=(0,), keepdims=False)
    assert dim_term(s, 0) == dim_term(e, 1)


def test_bcast_rules():
    x = input_node("float64", (None,), name="x")
    assert bcast([1, Dim(x, 0)]) == Dim(x, 0)  # 1 broadcasts
    assert bcast([Dim(x, 0), Dim(x, 0)]) == Dim(x, 0)  # equal sizes count once
    assert bcast([Dim(x, 0), 5]) == 5  # a static size other than 1 wins
    assert bcast([1, 1]) == 1


def test_reshape_target_of_minus_one_is_not_a_dimension():
    x = input_node("float64", (None, None), name="x")
    n = input_node("int64", (), name="n")
    shape = make_node("stack", [make_node("getitem", [make_node("shape", [x])], index=(("int", 0),)), n], axis=0)
    r = make_node("reshape", [x, shape])
    assert dim_term(r, 0) == Dim(x, 0)
    assert dim_term(r, 1) == Dim(r, 1)  # n may be -1 at run time: only the node itself knows


# --- each new rule fires and keeps results ----------------------------------------------------------------------
MAT, VEC = RNG.uniform(0.5, 2.0, (3, 4)), RNG.uniform(0.5, 2.0, 4)


def _shape_cases():
    x, v = st.dmatrix("x"), st.dvector("v")
    return [
        ("shape_of_computed", [x, v], (st.exp(x) + v).shape, None),
        ("shape_entry", [x, v], st.exp(x).reshape((x.shape[0], -1)).shape[0] * 2, None),
        ("getitem_stack", [x, v], (x * v).shape[1] + 1, None),
        ("sum_to_noop", [x, v], st.sum(sp.grad(st.sum(st.tanh(x) * st.exp(x)), x)), "sum_to"),
        ("alloc_operand", [x, v], sp.grad(st.sum(x) + st.sum(x**2), x), None),
        ("unary_of_alloc", [x, v], -st.alloc(v.sum(), x.shape[0], x.shape[1]) * x, None),
    ]


@pytest.mark.parametrize("case", range(6))
def test_shape_rule_fires_and_keeps_results(case):
    rule, inputs, out, lacks = _shape_cases()[case]
    f, g = compile_both(inputs, out)
    assert rule in fired(f), [str(r) for r in f.rewrites]
    assert lacks is None or lacks not in {n.op for n in graph_nodes(f)}
    assert all(n.inputs[0].is_leaf for n in graph_nodes(f) if n.op == "shape")
    assert_all_close([f(MAT, VEC)], [g(MAT, VEC)])


def test_sum_to_kept_where_a_broadcast_is_possible():
    # x + v with unknown sizes: v's dimension may be 1 at run time (then its gradient sums over the rows)
    x, v = st.dmatrix("x"), st.dmatrix("v")
    f, g = compile_both([x, v], sp.grad(st.sum((x + v) ** 2), v))
    a, b = RNG.normal(size=(3, 4)), RNG.normal(size=(1, 4))
    np.testing.assert_allclose(f(a, b), 2 * (a + b).sum(axis=0, keepdims=True))
    assert_all_close([f(a, b)], [g(a, b)])


# --- the gradient of a 2-layer MLP is lean ----------------------------------------------------------------------
def mlp(dtype="float64"):
    rng = np.random.default_rng(0)
    x, y = st.tensor(dtype=dtype, shape=(None, None), name="x"), st.lvector("y")
    w1 = sp.shared(rng.normal(0, 0.3, (5, 6)).astype(dtype), name="w1")
    b1 = sp.shared(np.zeros(6, dtype), name="b1")
    w2 = sp.shared(rng.normal(0, 0.3, (6, 3)).astype(dtype), name="w2")
    b2 = sp.shared(np.zeros(3, dtype), name="b2")
    params = [w1, b1, w2, b2]
    hidden = st.tanh(st.dot(x, w1) + b1)
    z = st.dot(hidden, w2) + b2
    prob = st.exp(z) / st.sum(st.exp(z), axis=1, keepdims=True)  # written naively on purpose
    loss = -st.mean(st.log(prob)[st.arange(y.shape[0]), y]) + 1e-3 * st.sum(w1**2)
    return [x, y], params, z, loss, sp.grad(loss, params)


def test_mlp_gradient_graph_reads_shapes_of_inputs_only():
    inputs, params, _z, loss, grads = mlp()
    f, g = compile_both(inputs, [loss, *grads])
    nodes = graph_nodes(f)
    before = len(toposort([o.node for o in [loss, *grads]]))
    assert len(nodes) < 0.65 * before, (len(nodes), before)
    assert all(n.inputs[0].is_leaf for n in nodes if n.op == "shape"), "shape() of a computed node is left"
    xs, ys = RNG.normal(size=(7, 5)), RNG.integers(0, 3, 7)
    assert_all_close(f(xs, ys), g(xs, ys))


def test_forward_and_backward_share_their_nodes():
    inputs, _params, _z, loss, grads = mlp()
    f, _ = compile_both(inputs, [loss, *grads])
    nodes = graph_nodes(f)
    counts = {op: sum(n.op == op for n in nodes) for op in ("log_softmax", "softmax", "dot", "exp")}
    # one log_softmax serves the loss and (through exp) the gradient; each forward dot is computed once
    assert counts == {"log_softmax": 1, "softmax": 0, "dot": 2, "exp": 0}, counts
    tanh = [n for n in nodes if n.op == "fused" and "tanh" in str(n.attrs["inner"])]
    assert len(tanh) == 1


def test_softmax_cross_entropy_gradient_is_softmax_minus_onehot():
    inputs, _params, z, loss, _grads = mlp()
    x, y = inputs
    gz = sp.grad(loss, z)
    f = sp.function([x, y], [z, gz])
    xs, ys = RNG.normal(size=(6, 5)), RNG.integers(0, 3, 6)
    zs, got = f(xs, ys)
    onehot = np.eye(3)[ys]
    np.testing.assert_allclose(got, (softmax(zs) - onehot) / len(ys), rtol=1e-10, atol=1e-14)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    z, y = st.dmatrix("z"), st.lvector("y")
    prob = st.exp(z) / st.sum(st.exp(z), axis=1, keepdims=True)
    loss = -st.mean(st.log(prob)[st.arange(y.shape[0]), y])
    f = sp.function([z, y], [loss, sp.grad(loss, z)])
    assert {"softmax", "log_softmax"} <= set(fired(f))
    zs, ys = np.array([[1000.0, 0.0, -1000.0], [0.0, 800.0, 0.0]]), np.array([1, 1])
    got_loss, got_grad = f(zs, ys)
    shifted = zs - zs.max(axis=1, keepdims=True)
    want = -np.mean((shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)))[[0, 1], ys])
    np.testing.assert_allclose(got_loss, want)
    np.testing.assert_allclose(got_grad, (softmax(zs) - np.eye(3)[ys]) / 2, atol=1e-15)


# --- logistic regression (the Theano tutorial's graph) ---------------------------------------------------------
def logistic(n_feats=4):
    x, y = st.dmatrix("x"), st.dvector("y")
    w = sp.shared(np.zeros(n_feats), name="w")
    b = sp.shared(0.0, name="b")
    p_1 = 1 / (1 + st.exp(-st.dot(x, w) - b))
    xent = -y * st.log(p_1) - (1 - y) * st.log(1 - p_1)
    cost = xent.mean() + 0.01 * (w**2).sum()
    return x, y, w, b, cost, sp.grad(cost, [w, b])


def test_logistic_regression_is_stable_and_exact():
    x, y, w, b, cost, (gw, gb) = logistic()
    f, g = compile_both([x, y], [cost, gw, gb])
    assert {"sub_neg", "sigmoid", "log_sigmoid", "log_one_minus_sigmoid"} <= set(fired(f))
    ops = {n.op for n in graph_nodes(f)} | {s[0] for n in graph_nodes(f) if "inner" in n.attrs
                                            for s in n.attrs["inner"].steps}  # fmt: skip
    assert "softplus" in ops and "log" not in ops
    xs, ys = RNG.normal(size=(6, 4)), RNG.integers(0, 2, 6).astype(float)
    w.set_value(np.array([400.0, -300.0, 200.0, 100.0]))  # |z| in the hundreds: the naive chain gives nan
    got = f(xs, ys)
    z = xs @ w.get_value() + b.get_value()
    p = 1 / (1 + np.exp(-z))
    want_cost = np.mean(ys * np.logaddexp(0, -z) + (1 - ys) * np.logaddexp(0, z)) + 0.01 * np.sum(w.get_value() ** 2)
    np.testing.assert_allclose(got[0], want_cost, rtol=1e-12)
    np.testing.assert_allclose(got[1], xs.T @ (p - ys) / 6 + 0.02 * w.get_value(), rtol=1e-12)
    np.testing.assert_allclose(got[2], np.mean(p - ys), rtol=1e-12, atol=1e-15)
    # the gradient is differentiated from the stable form, so the unoptimized graph's gradient is finite too
    # (its cost is not: the naive log(1 - p_1) is log(0) there)
    plain = g(xs, ys)
    assert np.isnan(plain[0])
    assert_all_close(got[1:], plain[1:], rtol=1e-12)


def test_pow_gradient_keeps_float32():
    x = st.fmatrix("x")
    gx = sp.grad(st.sum(x**2), x)
    assert all(n.dtype != "float64" for n in toposort([gx.node]))
    f = sp.function([x], gx)
    a = RNG.normal(size=(2, 3)).astype(np.float32)
    np.testing.assert_allclose(f(a), 2 * a, rtol=1e-6)
    assert f(a).dtype == np.float32


def test_stop_gradient_survives_the_stable_form():
    x = st.dvector("x")
    cost = st.sum(st.log(1 + st.exp(sp.gradient.disconnected_grad(x))) + x)
    f = sp.function([x], sp.grad(cost, x))
    np.testing.assert_allclose(f(np.array([0.5, -2.0])), [1.0, 1.0])


@pytest.mark.parametrize(
    ("xs", "vs", "ws"),
    [
        ((3, 4), (4,), (3, 1)),
        ((3, 1), (4,), (1, 4)),
        ((1, 1), (5,), (2, 1)),
        ((0, 4), (1,), (1, 4)),
        ((2, 3), (1,), (1, 1)),
    ],
)
def test_shapes_and_gradients_when_sizes_of_one_broadcast_at_run_time(xs, vs, ws):
    # no static sizes: whether a dimension is broadcast is only known at run time (1s and 0s included)
    x, v, w = st.dmatrix("x"), st.dvector("v"), st.dmatrix("w")
    y = st.tanh(x * w) + v
    cost = st.sum(y * st.exp(y.T).T)
    outs = [y.shape, y.T.shape[0], st.alloc(1.0, y.shape[0], y.shape[1]) * y, *sp.grad(cost, [x, v, w])]
    f, g = compile_both([x, v, w], outs)
    args = [RNG.normal(size=s) for s in (xs, vs, ws)]
    got, want = f(*args), g(*args)
    assert_all_close(got, want)
    assert [a.shape for a in got[-3:]] == [xs, vs, ws]
    assert all(n.inputs[0].is_leaf for n in graph_nodes(f) if n.op == "shape")
