"""Regression tests from a review of the CUDA row-op expansion, run-time ``sum_to`` sums, ``alloc`` views and
strided device views (compiler/cuda/emit.py, runtime/cuda_backend.py): every value is compared with the numpy
backend, through the fake pycuda driver of test_cuda_ptx.py (kernels simulated on the CPU)."""

from __future__ import annotations

import numpy as np
from test_cuda_ptx import FakeDriver, cuda_function

import sympile as sp
import sympile.tensor as st
from sympile.compiler.cuda.emit import emit_ptx, schedule
from sympile.compiler.graph import input_node, make_node
from sympile.function import SHARED_STORAGE
from sympile.runtime.cuda_backend import DeviceArray, use_driver
from sympile.variable import wrap

RNG = np.random.default_rng(11)


def _sum_to(x, like):
    """``sum_to(x, shape(like))``: a gradient's unbroadcast, with the target known only at run time."""
    return wrap(make_node("sum_to", [x.node, st.shape(like).node]))


def _compare(inputs, outputs, values, rtol=1e-12, atol=0.0):
    f, _ = cuda_function(inputs, outputs)
    got, want = f(*values), sp.function(inputs, outputs, backend="numpy")(*values)
    for g, w in zip(got, want):
        assert type(g) is np.ndarray and g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return f, got


def test_sum_to_of_a_shared_value_is_the_only_gpu_work():
    # the sum_to kernels were the program's only kernels: the PTX module was never loaded (KeyError at the launch)
    s = sp.shared(RNG.standard_normal((4, 5)), name="s")
    t = st.matrix("t", dtype="float64")
    f, got = _compare([t], [_sum_to(s, t)], [np.zeros((1, 5))])
    assert any("t0r1" in name for name, _, _ in f.program.launches)  # summed on the device
    np.testing.assert_allclose(got[0], s.get_value().sum(axis=0, keepdims=True), rtol=1e-12)
    u = st.matrix("u", dtype="float64")
    _compare([u], [_sum_to(s.T, u)], [np.zeros((5, 1))])
    # emit_ptx lists those kernels too, not only the host nodes
    x, shp = input_node("float32", (None, None)), make_node("shape", [input_node("float32", (None, None))])
    assert ".entry" in emit_ptx([x], [make_node("sum_to", [x, shp])])
    assert schedule([x], [make_node("sum_to", [x, shp])]).sum_to


def test_device_views_come_back_as_independent_c_arrays():
    x, v = st.matrix("x", dtype="float64"), st.vector("v", dtype="float64")
    e = st.exp(x)
    outs = [
        e.T,  # a transposed view
        e.dimshuffle(1, "x", 0),
        st.reshape(e, (-1,)),  # a view of a C-ordered value
        st.alloc(st.exp(v), 3, 4),  # stride 0 along the new axis
        st.alloc(st.sum(v), 2, 3),  # stride 0 everywhere: one element seen 6 times
        st.alloc(st.exp(v), 0, 4),
        st.alloc(st.exp(v), 3, 4).T,
    ]
    values = [RNG.standard_normal((3, 4)), RNG.standard_normal(4)]
    f, got = _compare([x, v], outs, values)
    for g in got:
        assert g.flags.c_contiguous and g.flags.writeable and g.flags.owndata
        assert g.size == 0 or 0 not in g.strides[: g.ndim - 1]  # no stride-0 (aliasing) axes
    got[4][0, 0] = 99.0  # writing one element of a fill changes no other element, output or later result
    assert (got[4] == 99.0).sum() == 1
    got[3][0, 0] = 99.0
    assert got[6][0, 0] != 99.0 and (got[3] == 99.0).sum() == 1
    again = f(*values)
    assert (again[4] != 99.0).all() and (again[3] != 99.0).all()


def test_alloc_and_row_ops_feed_matmuls():
    x, v, w = st.matrix("x", dtype="float32"), st.vector("v", dtype="float32"), st.matrix("w", dtype="float32")
    outs = [
        st.alloc(st.exp(v), 4, 5) @ w,  # a stride-0 operand
        x @ st.alloc(st.exp(v).dimshuffle(0, "x"), 5, 3),  # stride 0 along the columns
        st.softmax(x) @ w,
        st.logsumexp(x, axis=0) @ w,  # a reduction's result as a vector operand
        st.var(x, axis=1, keepdims=True).T @ x,
    ]
    values = [RNG.standard_normal((4, 5)), RNG.standard_normal(5), RNG.standard_normal((5, 3))]
    _compare([x, v, w], outs, [a.astype(np.float32) for a in values], rtol=1e-5, atol=1e-6)


def test_shared_updates_that_are_device_views():
    a = sp.shared(RNG.standard_normal((3, 4)), name="a")
    b = sp.shared(RNG.standard_normal((4, 3)), name="b")
    c = sp.shared(np.zeros((2, 4)), name="c")
    a0, b0 = a.get_value(), b.get_value()
    driver = FakeDriver()
    with use_driver(driver):
        updates = [(a, b.T), (b, a.T), (c, st.alloc(st.logsumexp(a, axis=0), 2, 4))]
        f = sp.function([], st.exp(a).sum(), updates=updates, backend="cuda")
    driver.simulate(f.program.schedule.specs)
    with use_driver(driver):
        first = f()
        stored = SHARED_STORAGE[c.node].raw  # kept on the device as the view itself: stride 0 along the rows
        assert isinstance(stored, DeviceArray) and stored.strides(2) == [0, 1]
        np.testing.assert_array_equal(a.get_value(), b0.T)  # swapped through transposed views, no copies
        np.testing.assert_array_equal(b.get_value(), a0.T)
        lse = np.log(np.exp(a0).sum(axis=0))
        np.testing.assert_allclose(c.get_value(), np.broadcast_to(lse, (2, 4)), rtol=1e-12)
        got = c.get_value()
        got[0, 0] = 99.0  # get_value is a copy of the stride-0 view: the stored value is unchanged
        assert c.get_value()[0, 0] != 99.0 and got[1, 0] != 99.0
        second = f()
    np.testing.assert_allclose([first, second], [np.exp(a0).sum(), np.exp(b0).sum()], rtol=1e-12)
    np.testing.assert_array_equal(a.get_value(), a0)
