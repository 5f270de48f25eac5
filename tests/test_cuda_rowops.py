"""softmax, log_softmax and logsumexp on the CUDA backend: expanded (compiler/cuda/emit.py ``expand_for_gpu``) into
max and sum reductions and fused elementwise kernels, so they run on the GPU, not on the host. Without a GPU:
values through the fake pycuda driver of test_cuda_ptx.py (kernels simulated on the CPU) against the numpy backend,
the transfers, and the PTX through ptxas."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_cuda_ptx import cuda_function, needs_ptxas

import sympile as sp
import sympile.tensor as st
from sympile.compiler.cuda.emit import EXPANDED_OPS, emit_ptx, expand_for_gpu, schedule
from sympile.compiler.cuda.ptx import assemble
from sympile.compiler.graph import input_node, make_node, toposort

RNG = np.random.default_rng(7)
RTOL = {"float32": 1e-5, "float64": 1e-12}
#: host nodes that move no data: a logsumexp without keepdims over trailing axes drops them by a device view
VIEWS = {"dimshuffle"}


def _hard_values(shape, dtype):
    """Normal values with rows that stress stability: all 1000, all -1000, a -inf row, a +inf and a -inf entry."""
    v = RNG.standard_normal(shape).astype(dtype)
    flat = v.reshape(shape[0], -1)
    flat[0] = 1000
    flat[1] = -1000
    flat[2] = -np.inf
    flat[3, 1] = np.inf
    flat[4, 2] = -np.inf
    flat[5, :3] = 1000 + np.arange(3)
    return v


def _run(inputs, outputs, values, dtype):
    """Compare the CUDA function with the numpy backend; return the function and its transfer counts."""
    f, driver = cuda_function(inputs, outputs)
    ref = sp.function(inputs, outputs, backend="numpy")
    driver.copies.update(htod=0, dtoh=0)
    got, want = f(*values), ref(*values)
    got, want = (got, want) if isinstance(got, list) else ([got], [want])
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=RTOL[dtype], atol=0)
    return f, dict(driver.copies)


def _host_ops(f) -> set:
    return {n.op for n in f.program.fallback_nodes}


CASES = [
    ("softmax", {}),
    ("softmax", {"axis": 0}),
    ("softmax", {"axis": None}),
    ("log_softmax", {}),
    ("log_softmax", {"axis": -2}),
    ("log_softmax", {"axis": None}),
    ("logsumexp", {}),
    ("logsumexp", {"axis": -1}),
    ("logsumexp", {"axis": 0}),
    ("logsumexp", {"axis": 1, "keepdims": True}),
    ("logsumexp", {"axis": None, "keepdims": True}),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("op", "kwargs"), CASES)
def test_row_ops_run_on_the_gpu_and_match_numpy(op, kwargs, dtype):
    x = st.matrix("x", dtype=dtype)
    out = getattr(st, op)(x, **kwargs)
    f, copies = _run([x], out, [_hard_values((9, 130), dtype)], dtype)
    assert _host_ops(f) <= VIEWS and not _host_ops(f) & set(EXPANDED_OPS)
    assert copies == {"htod": 1, "dtoh": 1}  # x up once, the result down once: nothing in between
    assert {"_rp", "_rf"} <= {name[-3:] for name, _, _ in f.program.launches}  # the reductions ran as kernels


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_three_d_axes_and_several_outputs(dtype):
    x = st.tensor(dtype, (None, None, None), name="x")
    outs = [
        st.logsumexp(x, axis=(0, 2)),  # a reduced axis after a kept one: keepdims form, then a view
        st.logsumexp(x, axis=(0, 1)),  # leading axes: broadcasts without keepdims
        st.logsumexp(x, axis=(0, 2), keepdims=True),
        st.softmax(x, axis=1),
        st.log_softmax(x),
        st.softmax(st.log_softmax(x)),  # nested: both expanded
    ]
    f, copies = _run([x], outs, [_hard_values((6, 5, 7), dtype)], dtype)
    assert _host_ops(f) <= VIEWS
    assert copies == {"htod": 1, "dtoh": len(outs)}


def test_expansion_keeps_the_source_line_and_fuses():
    x = input_node("float64", (None, None), name="x")
    y = make_node("log_softmax", [x], axis=-1)
    [out], _ = expand_for_gpu([y])
    new = [n for n in toposort([out]) if not n.is_leaf]
    assert {n.op for n in new} == {"max", "fused_reduce", "fused"}  # three kernels: max, sum of exp, result
    assert {n.source for n in new} == {y.source}
    assert out.type == y.type
    # graphs without row ops (and row ops on other dtypes) are left alone
    ints = make_node("softmax", [input_node("int32", (None,))])
    assert expand_for_gpu([ints])[0] == [ints]
    sched = schedule([x], [y])
    assert not sched.fallback and [n.op for n in sched.outputs] == ["fused"]


def test_integer_input_stays_on_the_host_and_is_correct():
    x = st.vector("x", dtype="int32")
    f, copies = _run([x], st.softmax(x), [RNG.integers(-5, 5, 40).astype(np.int32)], "float64")
    assert "softmax" in _host_ops(f)


def test_empty_reductions_match_numpy():
    x = st.matrix("x", dtype="float64")
    f, _ = _run([x], [st.logsumexp(x, axis=1), st.logsumexp(x)], [np.zeros((3, 0))], "float64")
    assert f(np.zeros((3, 0)))[0].tolist() == [-np.inf] * 3  # numpy's -inf, not max's zero-size error
    _run([x], [st.softmax(x), st.log_softmax(x), st.logsumexp(x, axis=0)], [np.zeros((0, 4))], "float64")
    g, _ = cuda_function([x], st.softmax(x))
    with pytest.raises(ValueError, match="zero-size") as err:  # numpy's error, as the numpy backend gives
        g(np.zeros((3, 0)))
    assert "softmax" in str(err.value) and "test_cuda_rowops.py" in str(err.value)  # the node the user wrote
    with pytest.raises(ValueError, match="zero-size"):
        sp.function([x], st.softmax(x), backend="numpy")(np.zeros((3, 0)))


def test_classifier_step_has_no_host_row_ops():
    x, y = st.matrix("x", dtype="float32"), st.matrix("y", dtype="float32")
    w = sp.shared(RNG.standard_normal((6, 4)).astype(np.float32) * 0.1, name="w")
    logits = x @ w
    loss = -(st.log_softmax(logits) * y).sum() / 8 + st.logsumexp(logits, axis=1).mean() * 0.01
    g = sp.grad(loss, w)
    f, copies = _run([x, y], [loss, g, st.softmax(logits)], [RNG.standard_normal((8, 6)).astype(np.float32),
                                                            np.eye(4, dtype=np.float32)[RNG.integers(0, 4, 8)]],
                     "float32")  # fmt: skip
    assert not _host_ops(f) & set(EXPANDED_OPS)


@needs_ptxas
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_expanded_kernels_assemble_without_spills(dtype):
    x = input_node(dtype, (None, None), name="x")
    outs = [
        make_node("softmax", [x], axis=-1),
        make_node("log_softmax", [x], axis=0),
        make_node("logsumexp", [x], axis=(1,), keepdims=False),
        make_node("logsumexp", [x], axis=None, keepdims=True),
        make_node("sum_to", [x, make_node("shape", [input_node(dtype, (None, None))])]),  # run-time sum kernels
    ]
    ptx = emit_ptx([x], outs, arch="sm_80")
    assert not any(op in line for line in ptx.splitlines() if line.startswith("// host") for op in EXPANDED_OPS)
    assert ptx.count(".entry") >= 3 * 4 + 2 * 2
    assert "t0r2_rp" in ptx
    for arch in ("sm_80", "sm_90"):
        assert assemble(ptx, arch).spilled == []


def test_alloc_is_a_broadcast_view_of_its_small_value():
    x, v = st.matrix("x", dtype="float64"), st.vector("v", dtype="float64")
    n = x.shape[0]
    outs = [
        st.alloc(v, n, x.shape[1]) * x,  # a device value broadcast: stride 0 along the new axis, no copy
        st.zeros_like(x) + 2,  # a constant fill read by a kernel: its one element goes up
        st.alloc(st.sum(v), 3, 2),  # a fill as an output: copied back as a full array
        st.alloc(st.exp(v).dimshuffle("x", 0), n, v.shape[0]).T.sum(axis=1),  # a view of a view, reduced
    ]
    values = [RNG.standard_normal((5, 4)), RNG.standard_normal(4)]
    f, copies = _run([x, v], outs, values, "float64")
    assert "alloc" in _host_ops(f)
    assert copies["dtoh"] == len(outs)
    assert copies["htod"] <= 3  # x, v and the fill's one element, never a filled array
    with pytest.raises(ValueError, match="broadcast"):  # numpy's error for a value that does not fit, from numpy
        f(RNG.standard_normal((5, 3)), RNG.standard_normal(4))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sum_to_that_sums_runs_on_the_gpu(dtype):
    # b's size is unknown statically, so the gradient sums at run time (sum_to): over axis 0 always (static), and
    # over axis 1 of the broadcast product when b has size 1 at run time
    x, b = st.matrix("x", dtype=dtype), st.vector("b", dtype=dtype)
    c = st.matrix("c", dtype=dtype)
    loss = (st.tanh(x * b) * c).sum()
    gb, gc = sp.grad(loss, [b, c])
    assert any(n.op == "sum_to" for n in sp.function([x, b, c], gb, backend="numpy").graph)
    f, _ = cuda_function([x, b, c], [gb, gc])
    assert f.program.schedule.sum_to  # the sum_to nodes got kernels
    for b_len, c_cols in ((1, 6), (6, 6), (6, 1)):
        values = [RNG.standard_normal((5, 6)).astype(dtype), RNG.standard_normal(b_len).astype(dtype)]
        values.append(RNG.standard_normal((5, c_cols)).astype(dtype))
        f, copies = _run([x, b, c], [gb, gc], values, dtype)
        # x, b, c and the one element of the sum's cotangent (a fill) go up; the sums run on the device
        assert copies == {"htod": 4, "dtoh": 2}
        if b_len == 1:
            assert any(name.split("_")[-2].startswith("t") for name, _, _ in f.program.launches)


VAR_CASES = [
    ("var", {}),
    ("var", {"axis": 1}),
    ("var", {"axis": 0, "ddof": 1}),
    ("var", {"axis": (0, 1), "keepdims": True}),
    ("std", {"axis": -1, "keepdims": True}),
    ("std", {"axis": 0, "ddof": 1.5}),
    ("std", {"axis": 1, "ddof": 200}),  # more than the row's length: numpy's max(n - ddof, 0) gives inf
]


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("op", "kwargs"), VAR_CASES)
def test_var_and_std_run_on_the_gpu_and_match_numpy(op, kwargs, dtype, static):
    shape = (9, 130)
    x = st.tensor(dtype, shape if static else (None, None), name="x")
    out = getattr(st, op)(x, **kwargs)
    values = RNG.standard_normal(shape).astype(dtype) * 3 + 100  # an offset: a one-pass formula would lose it
    f, driver = cuda_function([x], out)
    driver.copied_bytes.update(htod=0, dtoh=0)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "Degrees of freedom <= 0" for ddof=200
        got, want = f(values), sp.function([x], out, backend="numpy")(values)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=0)
    assert not _host_ops(f) & {"var", "std"}  # only shape arithmetic may stay on the host
    assert _host_ops(f) <= {"shape", "getitem"}
    # x goes up once and the result comes down; at most a scalar or two (the count from x's shape) besides
    assert values.nbytes <= driver.copied_bytes["htod"] <= values.nbytes + 16
    assert driver.copied_bytes["dtoh"] == got.nbytes
