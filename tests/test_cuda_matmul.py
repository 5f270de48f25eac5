"""The CUDA matmul kernel without a GPU: its PTX through ptxas, its logic in the host simulation (every thread of
the launch run on the CPU) against numpy, and the runtime through the fake pycuda driver of test_cuda_ptx.py
(a matmul between GPU kernels makes no round trip to the host)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from test_cuda_ptx import PTXAS, cuda_function

import sympile as sp
import sympile.tensor as st
from sympile.compiler.cuda.emit import emit_ptx, matmul_spec, schedule
from sympile.compiler.cuda.kernels import MatmulSpec, build_cuda_module
from sympile.compiler.cuda.launch import matmul_launch
from sympile.compiler.cuda.ptx import assemble, to_ptx
from sympile.compiler.graph import input_node, make_node
from sympile.compiler.llvm import target as llvm_target

needs_ptxas = pytest.mark.skipif(PTXAS is None, reason="ptxas not found (CUDA_HOME, PATH or pip nvidia-cuda-nvcc)")
RNG = np.random.default_rng(1)
TOL = {"float32": 1e-4, "float64": 1e-12}
DTYPES = ("float32", "float64")
#: the matmul kernel's thread layouts for products with a vector (emit.matmul_spec)
VECTOR_LAYOUTS = (("vm", (1, 4, 256)), ("mtv", (4, 1, 1)))


def _graph(inputs, outputs):
    f = sp.function(inputs, outputs, backend="numpy")
    return [i.node for i in f.inputs], f.graph


# --- PTX ----------------------------------------------------------------------------------------------------------
@needs_ptxas
def test_matmul_ptx_assembles_without_spills_on_sm80_and_sm90():
    specs = [MatmulSpec(f"mm{dt[-2:]}", dt) for dt in ("float32", "float64")]
    specs += [MatmulSpec(f"{kind}{dt[-2:]}", dt, layout=layout) for kind, layout in VECTOR_LAYOUTS for dt in DTYPES]
    ptx = to_ptx(str(build_cuda_module(specs)), "sm_80")
    assert ptx.count(".entry") == 6 and "fma.rn.f32" in ptx and "fma.rn.f64" in ptx
    assert "ld.global.nc" in ptx  # operands through the read-only cache (noalias pointers)
    for arch in ("sm_80", "sm_90"):
        result = assemble(ptx, arch)
        assert sorted(result.registers) == sorted(f"{s.name}_mm" for s in specs)
        assert result.spilled == [] and max(result.registers.values()) <= 255


@needs_ptxas
def test_dense_layer_graph_assembles():
    x, w, b = st.fmatrix("x"), st.fmatrix("w"), st.fvector("b")
    ins, outs = _graph([x, w, b], st.tanh(x @ w + b))
    text = emit_ptx(ins, outs, arch="sm_90")
    assert "// host" not in text and "_mm(" in text
    assert assemble(text, "sm_90").spilled == []


# --- the schedule -------------------------------------------------------------------------------------------------
def test_schedule_puts_float_matmuls_on_the_gpu_and_absorbs_transposes():
    a, b = input_node("float64", (None, None), name="a"), input_node("float64", (None, None), name="b")
    v = input_node("float64", (None,), name="v")
    at = make_node("dimshuffle", [a], new_order=(1, 0))
    outs = [make_node("matmul", [at, b]), make_node("dot", [a, v]), make_node("dot", [v, a]), make_node("dot", [v, v])]
    outs += [make_node("dot", [at, v]), make_node("dot", [v, make_node("dimshuffle", [b], new_order=(1, 0))])]
    sched = schedule([a, b, v], outs)
    assert not sched.fallback and len(sched.kernels) == 6
    assert all(n.op != "dimshuffle" for n in sched.order)  # the transpose is read through strides, not computed
    assert sched.kernels[0][2].transposed == (True, False) and sched.kernels[0][1] == [a, b]
    kinds = [s.layout if isinstance(s, MatmulSpec) else (s.reduce, s.axes) for _, _, s in sched.kernels]
    # A @ v, u @ v and v @ B.T read along the matrix's rows: sum reductions of i0*i1 over the last axis;
    # v @ B and A.T @ v take the matmul kernel with the threads along the outputs
    assert kinds == [(4, 4, 16), ("sum", (1,)), (1, 4, 256), ("sum", (0,)), (4, 1, 1), ("sum", (1,))]
    assert sched.kernels[5][1] == [v, b]
    # integer, mixed-dtype and batched products stay on the host
    i = input_node("int64", (None, None))
    f32 = input_node("float32", (None, None))
    c = input_node("float64", (None, None, None))
    for node in (make_node("dot", [i, i]), make_node("dot", [a, f32]), make_node("matmul", [c, c])):
        assert matmul_spec(node, "k") is None
        assert schedule([i, f32, c, a], [node]).fallback == [node]


def test_matmul_launch():
    assert matmul_launch(1, 1) == ((1, 1), (256, 1, 1))
    assert matmul_launch(64, 65) == ((2, 1), (256, 1, 1))
    assert matmul_launch(10**7, 10**7) == ((65535, 65535), (256, 1, 1))  # blocks then walk several tiles


# --- the kernel's logic on the CPU ------------------------------------------------------------------------------
def _simulator(dtype: str, layout=(4, 4, 16)):
    module = build_cuda_module([MatmulSpec("mm", dtype, layout=layout)], mode="host")
    jit = llvm_target.load_ir(str(llvm_target.optimize(llvm_target.parse_and_verify(str(module)))), ["mm_mm_grid"])
    return jit, ctypes.CFUNCTYPE(None, *[ctypes.c_int64] * 13)(jit.address("mm_mm_grid"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_simulated_kernel_any_grid_block_and_strides(dtype):
    """The kernel run directly: grids smaller than the tiles (blocks walk several), blocks of 64 threads
    (16 x 4 threads: 64 x 16 tiles), transposed and broadcast (stride 0) operands."""
    jit, run = _simulator(dtype)
    for m, n, k, grid, block in [(130, 67, 45, (1, 1), 256), (5, 200, 3, (2, 3), 64), (64, 64, 1, (1, 1), 32)]:
        a = RNG.standard_normal((k, m)).astype(dtype)  # read through a transpose: a.T is m x k
        b = RNG.standard_normal((k, n)).astype(dtype)
        out = np.full((m, n), np.nan, dtype)
        ptrs = [x.ctypes.data for x in (a, b, out)]
        run(block, grid[0], grid[1], m, n, k, *ptrs, 1, m, n, 1)
        np.testing.assert_allclose(out, a.T @ b, rtol=TOL[dtype], atol=TOL[dtype])
    # a column of b broadcast (stride 0 along n): every output column is a @ b[:, 0]
    a, b = RNG.standard_normal((9, 4)).astype(dtype), RNG.standard_normal(4).astype(dtype)
    out = np.zeros((9, 3), dtype)
    run(256, 1, 1, 9, 3, 4, a.ctypes.data, b.ctypes.data, out.ctypes.data, 4, 1, 1, 0)
    np.testing.assert_allclose(out, np.repeat((a @ b)[:, None], 3, axis=1), rtol=TOL[dtype], atol=TOL[dtype])
    del jit
    # the vector layouts: one row of outputs (all threads along n), one column (all threads along m)
    for (_, layout), (m, n) in zip(VECTOR_LAYOUTS, [(1, 2100), (1500, 1)]):
        jit, run = _simulator(dtype, layout)
        a, b = RNG.standard_normal((m, 6)).astype(dtype), RNG.standard_normal((6, n)).astype(dtype)
        out = np.full((m, n), np.nan, dtype)
        run(256, 2, 1, m, n, 6, a.ctypes.data, b.ctypes.data, out.ctypes.data, 6, 1, n, 1)
        np.testing.assert_allclose(out, a @ b, rtol=TOL[dtype], atol=TOL[dtype])
        del jit


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_simulated_products_match_numpy(dtype):
    a, b = st.matrix("a", dtype=dtype), st.matrix("b", dtype=dtype)
    u, v = st.vector("u", dtype=dtype), st.vector("v", dtype=dtype)
    outs = [a @ b, st.dot(a, v), st.dot(u, a), st.dot(v, v), a.T @ a, st.dot(b, b.T), a @ v, st.dot(a.T, u)]
    outs.append(st.dot(v, a.T))
    f, driver = cuda_function([a, b, u, v], outs)
    ref = sp.function([a, b, u, v], outs, backend="numpy")
    assert not f.program.fallback_nodes
    for m, k, n in [(130, 67, 70), (1, 1, 1), (3, 0, 4)]:  # k = 0: zeros, as numpy
        values = [RNG.standard_normal(s).astype(dtype) for s in ((m, k), (k, n), (m,), (k,))]
        for got, want in zip(f(*values), ref(*values)):
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])
    assert {name[-3:] for name, _, _ in driver.launches} == {"_mm", "_rp", "_rf"}


def test_empty_products_and_shape_errors_match_numpy():
    a, b = st.dmatrix("a"), st.dmatrix("b")
    f, driver = cuda_function([a, b], a @ b)
    driver.launches.clear()
    assert f(np.zeros((0, 3)), np.zeros((3, 5))).shape == (0, 5) and not driver.launches
    with pytest.raises(ValueError, match="shapes|aligned|mismatch"):
        f(np.zeros((2, 3)), np.zeros((4, 5)))
    v = st.dvector("v")
    g, _ = cuda_function([a, v], [st.dot(a, v), st.dot(v, a.T)])  # the reduction forms
    with pytest.raises(ValueError, match="shapes|aligned|mismatch"):
        g(np.zeros((2, 3)), np.zeros(4))
    got = g(np.ones((2, 3)), np.arange(3.0))
    np.testing.assert_array_equal(got[0], [3.0, 3.0])


# --- no host round trip ---------------------------------------------------------------------------------------
def test_dense_layer_makes_no_host_round_trip():
    x, w, b = st.fmatrix("x"), st.fmatrix("w"), st.fvector("b")
    f, driver = cuda_function([x, w, b], st.tanh(x @ w + b))
    assert not f.program.fallback_nodes
    values = [RNG.standard_normal(s).astype(np.float32) for s in ((70, 33), (33, 90), (90,))]
    driver.copies.update(htod=0, dtoh=0)
    got = f(*values)
    # the three inputs go up, the result comes back; the matmul's result stays on the device for tanh
    assert driver.copies == {"htod": 3, "dtoh": 1}
    assert [name.rsplit("_", 1)[1] for name, _, _ in driver.launches[-2:]] == ["mm", "s"]
    np.testing.assert_allclose(got, np.tanh(values[0] @ values[1] + values[2]), rtol=1e-5, atol=1e-5)


def test_mlp_gradient_runs_on_the_gpu():
    x, y = st.dmatrix("x"), st.dmatrix("y")
    w1, w2 = st.dmatrix("w1"), st.dmatrix("w2")
    h = st.tanh(x @ w1)
    loss = ((h @ w2 - y) ** 2).mean()
    outs = [loss, *sp.grad(loss, [w1, w2])]
    f, driver = cuda_function([x, y, w1, w2], outs)
    ref = sp.function([x, y, w1, w2], outs, backend="numpy")
    # the gradients' x.T @ g and g @ w2.T are matmul kernels reading through transposes
    host = f.program.fallback_nodes
    assert not any(n.op in ("matmul", "dot") or n.attrs.get("new_order") == (1, 0) for n in host), host
    values = [RNG.standard_normal(s) for s in ((20, 7), (20, 3), (7, 11), (11, 3))]
    driver.copies.update(htod=0, dtoh=0)
    for got, want in zip(f(*values), ref(*values)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # the four inputs and one host scalar (the mean's 1/n, computed by numpy from the shapes) go up; the three
    # outputs come back
    assert driver.copies == {"htod": 5, "dtoh": 3}
