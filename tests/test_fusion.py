"""Elementwise fusion: maximal groups become one ``fused`` node, reductions absorb their producers, no work is
duplicated, and a fused node computes exactly what the unfused nodes did (values and dtypes)."""

from __future__ import annotations

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st
from sympile.compiler.fusion import fuse
from sympile.compiler.graph import toposort
from sympile.compiler.ops.fused import Composite
from sympile.compiler.pipeline import merge
from sympile.printing import to_dot
from sympile.runtime.interpreter import NumpyProgram

RNG = np.random.default_rng(1)


def fused_only(inputs, outputs):
    """Run the fusion pass alone (no other rewrite) and return ``(fused outputs, log)``."""
    log = []
    return fuse([o.node for o in outputs], log), log


def run_nodes(inputs, outputs, arrays):
    return NumpyProgram([i.node for i in inputs], outputs).run(list(arrays), [])


def assert_exactly_equal(got, want):
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


def ops_of(nodes):
    return [n.op for n in toposort(nodes)]


# expression builders over (x matrix, y vector, s scalar) of a given dtype, with weak Python constants
EXPRESSIONS = [
    lambda x, y, s: st.exp(x) * st.sin(y) + st.log1p(x * x),
    lambda x, y, s: (x * 3 + 1) * y - s,
    lambda x, y, s: st.where(x > y, x - s, y * 2) + st.maximum(x, 0.5),
    lambda x, y, s: st.tanh(x / (1 + abs(y))) ** 2 + st.cast(x, "float32"),
    lambda x, y, s: (x // 2 + y % 3) * s,
]
DTYPES = ["float64", "float32", "int8", "int64", "uint8"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", range(len(EXPRESSIONS)))
def test_fused_node_computes_exactly_the_unfused_result(k, dtype):
    x, y, s = st.matrix(dtype=dtype), st.vector(dtype=dtype), st.scalar(dtype=dtype)
    try:
        out = EXPRESSIONS[k](x, y, s)
    except TypeError:
        pytest.skip("expression not defined for this dtype")
    arrays = [(RNG.uniform(1, 5, shape)).astype(dtype) for shape in ((3, 4), (4,), ())]
    fused, log = fused_only([x, y, s], [out])
    assert ops_of(fused)[-1] == "fused", ops_of(fused)
    assert sum(op == "fused" for op in ops_of(fused)) == 1  # the whole expression is one group
    with np.errstate(all="ignore"):
        assert_exactly_equal(run_nodes([x, y, s], fused, arrays), run_nodes([x, y, s], [out.node], arrays))
    assert log[0].rule == "fuse"


def test_describe_prints_the_inner_expression():
    x, y, z = st.dvectors("x", "y", "z")
    [node], _ = fused_only([x, y, z], [st.exp(x) * st.sin(y) + st.log1p(z * z)])
    inner = node.attrs["inner"]
    assert inner.describe() == "exp(i0)*sin(i1)+log1p(i2*i2)"
    assert [step[0] for step in inner.steps] == ["exp", "sin", "mul", "mul", "log1p", "add"]
    assert inner.dtypes == ("float64",) * 9


def test_composite_is_plain_hashable_data_and_merges():
    x = st.dvector("x")
    a = st.exp(x) * 2.0
    b = st.exp(x) * 2.0  # built twice: after fusion both are equal fused nodes, merge keeps one
    fused, _ = fused_only([x], [a, b])
    assert fused[0].attrs["inner"] == fused[1].attrs["inner"]
    assert hash(fused[0].attrs["inner"]) == hash(fused[1].attrs["inner"])
    merged = merge(fused)
    assert merged[0] is merged[1]
    c = Composite(1, (("constant", (), ()),), ("float64", "float64"))
    assert c == Composite(1, (("constant", (), ()),), ("float64", "float64"))


def test_broadcasting_inside_a_group():
    x, y, s = st.dmatrix("x"), st.dvector("y"), st.dscalar("s")
    out = (x + y) * s - y.dimshuffle("x", 0)
    fused, _ = fused_only([x, y, s], [out])
    arrays = [RNG.normal(size=(3, 4)), RNG.normal(size=4), np.float64(2.5)]
    assert_exactly_equal(run_nodes([x, y, s], fused, arrays), run_nodes([x, y, s], [out.node], arrays))
    assert fused[0].type == out.node.type


@pytest.mark.parametrize(
    ("reduce", "axis", "keepdims"),
    [("sum", None, False), ("sum", 1, True), ("max", 0, False), ("mean", (0, 1), False), ("prod", 1, False)],
)
def test_a_reduction_absorbs_its_elementwise_producers(reduce, axis, keepdims):
    x, y = st.dmatrix("x"), st.dvector("y")
    out = getattr(st, reduce)(st.exp(x) * y, axis=axis, keepdims=keepdims)
    fused, log = fused_only([x, y], [out])
    assert ops_of(fused) == ["input", "input", "fused_reduce"]
    node = fused[0]
    assert node.attrs["reduce"] == reduce and node.attrs["inner"].describe() == "exp(i0)*i1"
    arrays = [RNG.normal(size=(3, 4)), RNG.normal(size=4)]
    assert_exactly_equal(run_nodes([x, y], fused, arrays), run_nodes([x, y], [out.node], arrays))


def test_sum_of_one_elementwise_op_is_one_loop():
    x = st.dvector("x")
    [node], _ = fused_only([x], [st.sum(st.exp(x))])
    assert node.op == "fused_reduce" and node.attrs["inner"].describe() == "exp(i0)"


def test_a_value_used_outside_the_group_is_computed_once():
    x = st.dmatrix("x")
    e = st.exp(x)  # used by two different groups and by a dot: it must stay one node
    outs = [st.sin(e) * 2, st.cos(e) + 1, st.dot(e, e.T)]
    fused, _ = fused_only([x], outs)
    ops = ops_of(fused)
    steps = [s[0] for n in toposort(fused) if "inner" in n.attrs for s in n.attrs["inner"].steps]
    assert ops.count("exp") + steps.count("exp") == 1
    arrays = [RNG.normal(size=(3, 3))]
    assert_exactly_equal(run_nodes([x], fused, arrays), run_nodes([x], [o.node for o in outs], arrays))


def test_a_graph_output_is_not_swallowed():
    x = st.dvector("x")
    e = st.exp(st.sin(x))
    fused, _ = fused_only([x], [e, e * 2 + 1])
    assert fused[0].op == "fused" and fused[0].attrs["inner"].describe() == "exp(sin(i0))"
    assert fused[1].inputs[0] is fused[0]  # the second output reads the first, not a recomputation


def test_no_cycle_through_a_non_elementwise_node():
    x, w = st.dmatrices("x", "w")
    a = st.exp(x)
    out = (a + st.dot(a, w)) * 2  # a feeds the dot and the group: it must stay outside the group
    fused, _ = fused_only([x, w], [out])
    order = toposort(fused)
    assert len(order) == len({id(n) for n in order})
    arrays = [RNG.normal(size=(3, 3)), RNG.normal(size=(3, 3))]
    assert_exactly_equal(run_nodes([x, w], fused, arrays), run_nodes([x, w], [out.node], arrays))


def test_a_single_elementwise_op_is_left_alone():
    x = st.dvector("x")
    fused, log = fused_only([x], [st.exp(x)])
    assert ops_of(fused) == ["input", "exp"] and log == []


def test_pipeline_fuses_and_printing_shows_it():
    x, y = st.dvectors("x", "y")
    f = sp.function([x, y], st.sum(st.exp(x) * y))
    assert [n.op for n in toposort(f.graph)] == ["input", "input", "fused_reduce"]
    dot = to_dot(f)
    assert "fused_reduce{reduce=sum,axis=None,keepdims=False}{exp(i0)*i1}" in dot
    np.testing.assert_allclose(f([0.0, 1.0], [2.0, 3.0]), 2 + 3 * np.e)
    assert any(r.rule == "fuse" for r in f.rewrites)


def test_fused_node_keeps_the_source_line_and_name():
    x = st.dvector("x")
    y = st.exp(x) * 2.0
    y.name = "y"
    f = sp.function([x], y)
    assert f.graph[0].op == "fused" and f.graph[0].name == "y"
    assert f.graph[0].source.endswith(f"test_fusion.py:{__import__('inspect').currentframe().f_lineno - 4}")
