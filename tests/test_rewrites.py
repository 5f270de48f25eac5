"""Every rewrite rule fires where it should (seen in ``f.rewrites`` and the optimized graph), not where it
must not, and the numpy backend gives the same results with and without the optimizer."""

from __future__ import annotations

import os

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st
from sympile import gradient
from sympile.compiler.graph import input_node, make_node, toposort
from sympile.compiler.rewrite import P, Rule, rewrite_graph
from sympile.printing import debugprint

RNG = np.random.default_rng(0)
MAT = RNG.uniform(0.1, 2.0, (3, 4))
VEC = RNG.uniform(0.1, 2.0, 4)


def compile_both(build, *arrays, static=False):
    """``(optimized function, optimized result, unoptimized result)`` of ``build(*inputs)`` on ``arrays``."""
    arrays = [np.asarray(a) for a in arrays]
    ins = [st.tensor(dtype=a.dtype, shape=_static(a.shape, static), name=f"in{i}") for i, a in enumerate(arrays)]
    out = build(*ins)
    f = sp.function(ins, out, on_unused_input="ignore")
    g = sp.function(ins, out, optimize=False, on_unused_input="ignore")
    return f, f(*arrays), g(*arrays)


def _static(shape, static) -> tuple:
    """All dims known (True), none (False) or only the first ('first')."""
    if static == "first":
        return shape[:1] + (None,) * (len(shape) - 1)
    return shape if static else (None,) * len(shape)


def graph_ops(f) -> set[str]:
    """Ops of the optimized graph, including the steps inside fused nodes."""
    ops = set()
    for node in toposort(f.graph):
        ops.add(node.op)
        if "inner" in node.attrs:
            ops.update(step[0] for step in node.attrs["inner"].steps)
    return ops


def fired(f) -> list[str]:
    return [r.rule for r in f.rewrites]


def assert_close(got, want, rtol=1e-12):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-300, equal_nan=True)


# (rule, build, inputs, static shapes?, an op the optimized graph has, an op it no longer has)
CASES = [
    ("mul_one", lambda x: x * 1, [MAT], False, None, "mul"),
    ("mul_one", lambda x: 1.0 * x, [MAT.astype("float32")], False, None, "mul"),
    ("div_one", lambda x: x / 1, [MAT], False, None, "true_div"),
    ("add_zero", lambda x: -0.0 + x, [MAT], False, None, "add"),
    ("sub_zero", lambda x: x - 0.0, [MAT], False, None, "sub"),
    ("pow_one", lambda x: x**1, [MAT], False, None, "pow"),
    ("gradient_marker", lambda x: gradient.zero_grad(st.exp(gradient.disconnected_grad(x))), [MAT], False, "exp", None),
    ("neg_neg", lambda x: st.neg(-x), [MAT], False, None, "neg"),
    ("dimshuffle_dimshuffle", lambda x: x.T.T, [MAT], False, None, "dimshuffle"),
    ("dimshuffle_dimshuffle", lambda x: x.dimshuffle(0, "x", 1).dimshuffle(2, 0, 1), [MAT], False, None, None),
    ("dimshuffle_identity", lambda x: x.dimshuffle(0, 1), [MAT], False, None, "dimshuffle"),
    ("reshape_reshape", lambda x: x.reshape((-1,)).reshape((4, 3)), [MAT], True, "reshape", None),
    ("reshape_noop", lambda x: st.exp(x.reshape((3, 4))), [MAT], True, "exp", "reshape"),
    ("log_exp", lambda x: st.log(st.exp(x)), [MAT], False, None, "log"),
    ("sub_neg", lambda x, v: -x - v, [MAT, VEC], False, None, "sub"),
    ("sum_of_alloc", lambda v: st.sum(st.alloc(v.sum(), 3, 4)), [VEC], False, None, "alloc"),
    ("sum_of_alloc", lambda v: st.sum(st.alloc(v.sum(), 3, v.shape[0]), axis=1), [VEC], False, "alloc", None),
    ("sum_of_alloc", lambda v: st.sum(st.alloc(v.sum(), 2, 5), axis=0, keepdims=True), [VEC], False, None, None),
    ("lift_dimshuffle", lambda x, v: (st.exp(x) + v).T, [MAT, VEC], False, "fused", None),
    ("constant_fold", lambda x: x + st.constant(2.0) * st.constant(3.0), [MAT], False, None, "mul"),
    ("static_shape", lambda x: x.shape, [MAT], True, "constant", "shape"),
    ("static_int", lambda x: x * x.shape[0], [MAT], "first", None, "shape"),
    ("log1p", lambda x: st.log(1 + x), [MAT], False, "log1p", "log"),
    ("log1p", lambda x: st.log(x + 1), [MAT.astype("int8")], False, "log1p", "log"),
    ("softplus", lambda x: st.log(1 + st.exp(x)), [MAT], False, "softplus", "log"),
    ("expm1", lambda x: st.exp(x) - 1, [MAT], False, "expm1", "exp"),
    ("expm1_add", lambda x: st.exp(x) + (-1), [MAT], False, "expm1", "exp"),
    ("logsumexp", lambda x: st.log(st.sum(st.exp(x), axis=1)), [MAT], False, "logsumexp", "exp"),
    ("logsumexp", lambda x: st.log(st.exp(x).sum(keepdims=True)), [MAT], False, "logsumexp", "exp"),
    ("softmax", lambda x: st.exp(x) / st.sum(st.exp(x), axis=1, keepdims=True), [MAT], False, "softmax", "exp"),
    ("softmax", lambda x: st.exp(x) / st.sum(st.exp(x), axis=0), [MAT], False, "softmax", "exp"),
    ("softmax", lambda v: st.exp(v) / st.exp(v).sum(), [VEC], False, "softmax", "exp"),
    (
        "softmax_dimshuffle",
        lambda x: st.exp(x) / st.sum(st.exp(x), axis=1).dimshuffle(0, "x"),
        [MAT],
        False,
        "softmax",
        "exp",
    ),
    ("log_softmax", lambda x: st.log(st.softmax(x)), [MAT], False, "log_softmax", "log"),
    (
        "log_softmax_getitem",
        lambda x: st.log(st.softmax(x)[st.arange(3), [0, 2, 1]]),
        [MAT],
        False,
        "log_softmax",
        "log",
    ),  # fmt: skip
    ("log_sigmoid", lambda x: st.log(st.sigmoid(x)), [MAT], False, "softplus", "log"),
    ("log_sigmoid", lambda x: -st.log(st.sigmoid(x)), [MAT.astype("uint8")], False, "softplus", "log"),
    ("log_one_minus_sigmoid", lambda x: st.log(1 - st.sigmoid(x)), [MAT], False, "softplus", "log"),
    ("sigmoid", lambda x: 1 / (1 + st.exp(-x)), [MAT], False, "sigmoid", "exp"),
    ("small_power", lambda x: x**2, [MAT], False, "sqr", "pow"),
    ("small_power", lambda x: x**3, [MAT], False, "sqr", "pow"),
    ("small_power", lambda x: x**4, [MAT.astype("float32")], False, "sqr", "pow"),
    ("small_power", lambda x: x**2.0, [(MAT * 10).astype("int16")], False, "sqr", "pow"),
    ("small_power", lambda x: x**0.5, [MAT], False, "sqrt", "pow"),
    ("small_power", lambda x: x**-1, [MAT], False, "reciprocal", "pow"),
    ("mul_self", lambda x: x * x, [MAT], False, "sqr", "mul"),
    ("reciprocal", lambda x: 1 / x, [MAT], False, "reciprocal", "true_div"),
]


@pytest.mark.parametrize(("rule", "build", "arrays", "static", "has", "lacks"), CASES)
def test_rule_fires_and_keeps_results(rule, build, arrays, static, has, lacks):
    f, got, want = compile_both(build, *arrays, static=static)
    assert rule in fired(f), f"{rule} did not fire: {[str(r) for r in f.rewrites]}"
    ops = graph_ops(f)
    assert has is None or has in ops, ops
    assert lacks is None or lacks not in ops, ops
    assert_close(got, want, rtol={"float16": 2e-3, "float32": 1e-6}.get(got.dtype.name, 1e-12))


def test_every_rule_has_a_case():
    from sympile.compiler.rules import canonicalize, fold, specialize, stabilize

    names = {r.name for m in (fold, canonicalize, stabilize, specialize) for r in m.RULES}
    assert names <= {c[0] for c in CASES}, names - {c[0] for c in CASES}


# --- rewrites that must not apply ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "arrays", "rule"),
    [
        (lambda v: v * np.ones((3, 1)), [VEC], "mul_one"),  # broadcasting enlarges the shape
        (lambda v: v + np.zeros((2, 1)), [VEC], "add_zero"),
        (lambda x: x * st.constant(np.float64(1)), [MAT.astype("float32")], "mul_one"),  # promotes to float64
        (lambda x: x * 1.0, [(MAT * 10).astype("int32")], "mul_one"),  # int * float is float
        (lambda x: st.log(st.exp(x)), [(MAT * 10).astype("int32")], "log_exp"),  # float result of an int
        (lambda x: st.log(2 + x), [MAT], "log1p"),
        (lambda x: x**5, [MAT], "small_power"),
    ],
)
def test_rule_does_not_fire_when_it_would_change_the_result(build, arrays, rule):
    f, got, want = compile_both(build, *arrays)
    assert rule not in fired(f)
    assert_close(got, want)


@pytest.mark.parametrize("build", [lambda x: x / x, lambda x: x * 0, lambda x: x - x])
def test_rewrites_wrong_for_nan_and_inf_are_not_applied(build):
    x = np.array([1.0, np.inf, np.nan, 0.0])
    f, got, want = compile_both(build, x)
    np.testing.assert_array_equal(got, want)  # nan and inf propagate exactly as numpy computes them
    assert np.isnan(got[1]) and np.isnan(got[2])


# --- stability: the stable form is finite where the naive one overflows ----------------------------------------
STABLE = [
    (lambda x: st.log(1 + x), np.array([1e-20, 1e-300]), np.array([1e-20, 1e-300])),
    (lambda x: st.exp(x) - 1, np.array([1e-20]), np.array([1e-20])),
    (lambda x: st.log(st.exp(x) + 1), np.array([800.0, -800.0]), np.array([800.0, np.exp(-800.0)])),
    (lambda x: st.log(st.sum(st.exp(x))), np.array([1000.0, 1000.0]), 1000 + np.log(2)),
    (lambda x: st.exp(x) / st.exp(x).sum(), np.array([1000.0, 0.0]), np.array([1.0, 0.0])),
    (lambda x: st.log(st.softmax(x)), np.array([1000.0, 0.0]), np.array([0.0, -1000.0])),
    (lambda x: -st.log(st.sigmoid(x)), np.array([-800.0, 0.0]), np.array([800.0, np.log(2)])),
    (lambda x: st.log(1 - st.sigmoid(x)), np.array([800.0, 0.0]), np.array([-800.0, -np.log(2)])),
    (lambda x: st.log(st.sigmoid(x)), np.array([-800.0]), np.array([-800.0])),
]


@pytest.mark.parametrize(("build", "x", "want"), STABLE)
def test_stable_form_is_finite_where_the_naive_one_is_not(build, x, want):
    f, got, naive = compile_both(build, x)
    assert not np.allclose(naive, want, rtol=1e-6, atol=0), "the naive form was expected to lose the value"
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("form", ["softmax_op", "exp_over_sum"])
def test_cross_entropy_of_a_softmax_is_stable(form):
    """The tutorial form -mean(log(softmax(z))[arange(n), y]) with logits that overflow exp."""
    z, y = st.dmatrix("z"), st.ivector("y")
    prob = st.softmax(z) if form == "softmax_op" else st.exp(z) / st.exp(z).sum(axis=1, keepdims=True)
    loss = -st.mean(st.log(prob)[st.arange(z.shape[0]), y])
    zv, yv = np.array([[1000.0, 0.0], [0.0, 1000.0], [3.0, 1.0]]), np.array([1, 0, 0], dtype=np.int32)
    naive = sp.function([z, y], loss, optimize=False)(zv, yv)
    f = sp.function([z, y], loss)
    got = f(zv, yv)
    assert not np.isfinite(naive)
    want = np.mean([1000.0, 1000.0, np.logaddexp(3.0, 1.0) - 3.0])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert "log_softmax" in graph_ops(f)


# --- the engine ------------------------------------------------------------------------------------------------
def test_engine_skips_a_replacement_of_another_dtype_or_rank():
    x = input_node("float64", (None,), name="x")
    y = make_node("exp", [x])
    wrong_dtype = Rule("to_f32", P("exp", P.var("x")), lambda x: make_node("cast", [x], dtype="float32"))
    wrong_rank = Rule("to_scalar", P("exp", P.var("x")), lambda x: make_node("sum", [x]))
    log = []
    assert rewrite_graph([y], [wrong_dtype, wrong_rank], log) == [y]
    assert log == []


def test_rule_callback_must_take_the_pattern_bindings():
    with pytest.raises(TypeError, match="bindings"):
        Rule("bad", P("exp", P.var("x"), name="n"), lambda x: x)


def test_rewrites_reach_a_fixed_point_on_a_deep_graph():
    x = st.dvector("x")
    y = x
    for _ in range(3000):  # deeper than Python's recursion limit
        y = -y
    y = st.exp(y * 1)
    f = sp.function([x], y)
    assert [n.op for n in toposort(f.graph)] == ["input", "exp"]
    np.testing.assert_array_equal(f([0.5]), np.exp([0.5]))


def test_rewrites_are_recorded_and_keep_the_source_line():
    x = st.dvector("x")
    y = st.log(1 + x)
    line = __import__("inspect").currentframe().f_lineno - 1
    f = sp.function([x], y)
    [record] = f.rewrites
    assert (record.rule, record.before, record.after) == ("log1p", "log(1+x)", "log1p(x)")
    assert "log1p" in str(record)
    assert f.graph[0].op == "log1p"
    assert f.graph[0].source.endswith(f"test_rewrites.py:{line}")


def test_optimize_false_applies_nothing():
    x = st.dvector("x")
    f = sp.function([x], st.log(1 + x * 1), optimize=False)
    assert f.rewrites == []
    assert [n.op for n in toposort(f.graph)].count("mul") == 1


def test_big_constants_are_not_folded():
    x = st.dvector("x")
    big = st.zeros((300, 300)) + st.constant(1.0)
    f = sp.function([x], x.sum() + big)
    assert "alloc" in graph_ops(f)
    np.testing.assert_array_equal(f([1.0, 2.0]), np.full((300, 300), 4.0))


# --- visible ---------------------------------------------------------------------------------------------------
def test_dump_dir_writes_the_graph_after_each_pass(tmp_path):
    x, y = st.dvectors("x", "y")
    sp.function([x, y], st.exp(x) * st.sin(y) + 0, dump_dir=str(tmp_path))
    names = sorted(os.listdir(tmp_path))
    assert names[:3] == ["00-input.dot", "01-merge.dot", "02-fold.dot"]
    assert names[-2:] == ["07-fuse.dot", "08-merge.dot"]
    first, last = (open(tmp_path / n).read() for n in (names[0], names[-1]))
    assert first.startswith("digraph") and "add" in first
    assert "fused" in last and "exp(i0)*sin(i1)" in last


def test_debugprint_shows_fused_nodes_with_their_inner_expression():
    x, y = st.dvectors("x", "y")
    f = sp.function([x, y], st.exp(x) * st.sin(y))
    text = debugprint(f, file="str")
    assert text.splitlines()[0].startswith("fused{exp(i0)*sin(i1)} [id A] <float64[?]>")


def test_optimizer_page_examples_run(tmp_path, monkeypatch, capsys):
    """Every ```python block of docs/optimizer.md runs, in order, in one namespace."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "optimizer.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__doc_example__"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/optimizer.md[block {i}]", "exec"), namespace)  # noqa: S102 - our own docs
    capsys.readouterr()
