"""The CUDA backend without a GPU: PTX assembled by ptxas, the kernels' logic simulated on the CPU, the runtime
driven through a fake pycuda.driver.

The simulation builds the same kernel drivers for the host (``mode='host'``): the thread and block ids become
loop variables of a host wrapper that runs every thread of the launch configuration the runtime chose, so the
grid-stride indexing, the broadcast strides and the two-pass reductions are checked against the numpy backend.
The fake driver keeps "device" memory in host buffers and runs the host wrappers when a kernel is launched.
Tests marked ``gpu`` need pycuda and a real GPU; they are skipped otherwise.
"""

from __future__ import annotations

import ctypes
import io
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st
from sympile import printing
from sympile.compiler.cuda import kernels as cuda_kernels
from sympile.compiler.cuda.emit import cuda_kernel_spec, emit_ptx, module_ir
from sympile.compiler.cuda.launch import elementwise_launch, final_launch, reduction_launch
from sympile.compiler.cuda.ptx import assemble, find_ptxas, to_ptx
from sympile.compiler.graph import input_node, make_node
from sympile.compiler.llvm import target as llvm_target
from sympile.compiler.ops.elementwise import LOWER
from sympile.compiler.optable import OPS
from sympile.runtime import cuda_backend
from sympile.runtime.cuda_backend import CudaUnavailable, use_driver

PTXAS = find_ptxas()
needs_ptxas = pytest.mark.skipif(PTXAS is None, reason="ptxas not found (CUDA_HOME, PATH or pip nvidia-cuda-nvcc)")
DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint32", "uint64", "float16", "float32", "float64"]
REDUCTIONS = ("sum", "prod", "max", "min", "mean", "all", "any", "argmax", "argmin")


def _have_gpu() -> bool:
    try:
        import pycuda.driver as drv  # noqa: PLC0415

        drv.init()
        return drv.Device.count() > 0
    except Exception:  # noqa: BLE001  (no pycuda, no driver, no device)
        return False


gpu = pytest.mark.gpu


# --- graphs -----------------------------------------------------------------------------------------------------
def _op_nodes(dtype: str) -> list:
    """One node per lowered elementwise op that accepts ``dtype`` (plus casts to and from it)."""
    x, y, c = (input_node(dtype, (None,), name=n) for n in "xyc")
    nodes = []
    for op in sorted(LOWER):
        args = {1: [x], 2: [x, y], 3: [input_node("bool", (None,)), x, y] if op == "where" else [x, y, c]}
        try:
            if op == "cast":
                nodes += [make_node("cast", [x], dtype=d) for d in ("bool", "int32", "uint64", "float32", "float64")]
            else:
                nodes.append(make_node(op, args[OPS[op].arity]))
        except Exception:  # noqa: BLE001  (the op does not take this dtype: numpy has no loop either)
            continue
    return nodes


def _specs(nodes: list) -> list:
    specs = []
    for node in nodes:
        found = cuda_kernel_spec(node, f"k{len(specs)}")
        if found is not None:
            specs.append(found[0])
    return specs


def _softmax(x):
    e = st.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _graph(inputs, outputs):
    """The optimized graph of a function (through the numpy backend, which compiles nothing)."""
    f = sp.function(inputs, outputs, backend="numpy")
    return [i.node for i in f.inputs], f.graph


# --- PTX through ptxas ------------------------------------------------------------------------------------------
@needs_ptxas
def test_elementwise_ptx_in_every_dtype_assembles_without_spills():
    specs, skipped = [], []
    for dtype in DTYPES:
        for node in _op_nodes(dtype):
            found = cuda_kernel_spec(node, f"{dtype}_k{len(specs)}")
            if found is None:
                skipped.append((node.op, dtype))
            else:
                # the contiguous entry only: the strided one has the same scalar code (checked on fewer kernels
                # below), and ptxas takes ~20 ms per kernel
                specs.append(replace(found[0], ndim=0))
    # every lowered op builds for the GPU: the scalar code calls only intrinsics NVPTX selects
    assert not skipped, skipped
    assert len(specs) > 300
    ptx = to_ptx(module_ir(specs), "sm_80")
    assert ".target sm_80" in ptx
    # the same PTX assembled for both chips at once (PTX for sm_80 runs on sm_90)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda arch: assemble(ptx, arch), ["sm_80", "sm_90"]))
    for result in results:
        assert len(result.registers) == len(specs)
        assert result.spilled == []


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_strided_elementwise_ptx_assembles(arch):
    x, y = input_node("float32", (None, None), name="x"), input_node("int64", (None,), name="y")
    nodes = [make_node("mul", [make_node("exp", [x]), make_node("cast", [y], dtype="float32")])]
    nodes += [make_node("floor_div", [y, y]), make_node("where", [make_node("gt", [x, x]), x, x])]
    specs = _specs(nodes)
    result = assemble(to_ptx(module_ir(specs), arch), arch)
    assert sorted(result.registers) == sorted(sym for s in specs for sym in cuda_kernels.kernel_symbols(s))
    assert any(sym.endswith("_s") for sym in result.registers) and result.spilled == []


@needs_ptxas
def test_reduction_ptx_assembles_without_spills():
    specs = []
    for dtype in ("bool", "int32", "int64", "float16", "float32", "float64"):
        x = input_node(dtype, (None, None), name="x")
        for reduce in REDUCTIONS:
            if (dtype == "bool") != (reduce in ("all", "any", "argmax")) and dtype != "float32":
                continue  # all/any on bools, the arithmetic ones on numbers (and everything on float32)
            for axis in (None, (1,)) + (((0,),) if dtype == "float32" else ()):
                found = cuda_kernel_spec(make_node(reduce, [x], axis=axis), f"{dtype}_{reduce}_{len(specs)}")
                assert found is not None, (dtype, reduce)
                specs.append(found[0])
    ptx = to_ptx(module_ir(specs), "sm_80")
    assert "shfl.sync.down" in ptx and "bar.sync" in ptx
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda arch: assemble(ptx, arch), ["sm_80", "sm_90"]))
    for result in results:
        assert len(result.registers) == 2 * len(specs)
        assert result.spilled == []


@needs_ptxas
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_softmax_and_gradient_graphs_assemble(arch):
    x, w = st.fmatrix("x"), st.fmatrix("w")
    ins, outs = _graph([x], _softmax(x))
    ptx = emit_ptx(ins, outs, arch=arch)
    assert ptx.count(".entry") >= 4  # max and sum reductions (two passes each) and the elementwise kernels
    assert assemble(ptx, arch).spilled == []
    loss = st.tanh(x * w).sum() + (st.sigmoid(w) ** 2).mean()
    ins, outs = _graph([x, w], [loss, sp.grad(loss, w)])
    ptx = emit_ptx(ins, outs, arch=arch)
    assert assemble(ptx, arch).spilled == []


def test_ptx_version_is_left_to_llvm():
    x = input_node("float32", (None,), name="x")
    assert ".version 7.0" in emit_ptx([x], [make_node("exp", [x])], arch="sm_80")
    assert ".version 7.8" in emit_ptx([x], [make_node("exp", [x])], arch="sm_90")


def test_kernels_are_ptx_kernels_with_global_pointers():
    x = input_node("float64", (None,), name="x")
    text = module_ir(_specs([make_node("sin", [x])]))
    assert "define ptx_kernel void" in text and "ptr addrspace(1)" in text
    assert "@sin(" not in text and "llvm.sin" not in text  # our math library, not libm or llvm.sin


# --- the host simulation and the fake driver ----------------------------------------------------------------
class _Allocation:
    def __init__(self, nbytes: int):
        self.buffer = np.zeros(nbytes + 8, np.uint8)  # a little slack: an overrun would corrupt nothing else

    def __int__(self):
        return self.buffer.ctypes.data


class FakeDriver:
    """A stand-in for pycuda.driver: host buffers as device memory, kernels run by their host simulation."""

    def __init__(self, sm_count: int = 2, capability=(8, 0)):
        self.launches: list = []
        self.copies = {"htod": 0, "dtoh": 0}
        self.copied_bytes = {"htod": 0, "dtoh": 0}
        self.simulators: dict = {}
        self.loaded: list = []
        self.device_attribute = SimpleNamespace(MULTIPROCESSOR_COUNT="MULTIPROCESSOR_COUNT")
        context = SimpleNamespace(push=lambda: None)
        device = SimpleNamespace(
            retain_primary_context=lambda: context,
            get_attribute=lambda attr: sm_count,
            compute_capability=lambda: capability,
        )
        self.Device = lambda index: device
        self.Device.count = lambda: 1

    def init(self):
        pass

    def mem_alloc(self, nbytes: int) -> _Allocation:
        assert nbytes > 0
        return _Allocation(nbytes)

    def memcpy_htod(self, dest, src: np.ndarray):
        self.copies["htod"] += 1
        self.copied_bytes["htod"] += src.nbytes
        ctypes.memmove(int(dest), src.ctypes.data, src.nbytes)

    def memcpy_dtoh(self, dest: np.ndarray, src):
        self.copies["dtoh"] += 1
        self.copied_bytes["dtoh"] += dest.nbytes
        ctypes.memmove(dest.ctypes.data, int(src), dest.nbytes)

    def memset_d32(self, dest, value: int, count: int):
        words = np.full(count, value, np.uint32)
        ctypes.memmove(int(dest), words.ctypes.data, words.nbytes)

    def module_from_buffer(self, buffer: bytes):
        assert buffer.endswith(b"\0")  # the driver reads PTX as a C string
        ptx = buffer[:-1].decode()
        self.loaded.append(ptx)
        driver = self

        class Module:
            def get_function(self, name):
                m = re.search(rf"\.entry {re.escape(name)}\((.*?)\)", ptx, re.S)
                assert m, f"no kernel {name} in the PTX"
                return FakeFunction(driver, name, m.group(1).count(".param"))

        return Module()

    def simulate(self, specs: list) -> None:
        """Build the host simulation of ``specs`` (what module_from_buffer's kernels run)."""
        module = cuda_kernels.build_cuda_module(specs, mode="host")
        grids = {f.name: len(f.args) for f in module.functions if f.name.endswith("_grid")}
        mod = llvm_target.optimize(llvm_target.parse_and_verify(str(module)))
        jit = llvm_target.load_ir(str(mod), list(grids))
        self._jit = jit  # the code lives as long as this reference
        for name, n_args in grids.items():
            fn = ctypes.CFUNCTYPE(None, *[ctypes.c_int64] * n_args)(jit.address(name))
            self.simulators[name[: -len("_grid")]] = fn


class FakeFunction:
    def __init__(self, driver: FakeDriver, name: str, n_params: int):
        self.driver, self.name, self.n_params = driver, name, n_params

    def __call__(self, *args, block, grid, shared=0):
        # pycuda packs numpy scalars by their own size: pointers must be 64-bit, counts int64
        assert len(args) == self.n_params, f"{self.name}: {len(args)} arguments for {self.n_params} parameters"
        assert all(isinstance(a, (np.uintp, np.int64)) for a in args), [type(a) for a in args]
        assert len(block) == 3 and block[0] % 32 == 0 and block[0] <= 1024 and block[1:] == (1, 1)
        assert len(grid) == 2 and 1 <= grid[1] <= 65535 and grid[0] >= 1
        self.driver.launches.append((self.name, grid, block))
        words = [int(a) if isinstance(a, np.uintp) else int(a) for a in args]
        self.driver.simulators[self.name](block[0], grid[0], grid[1], *words)


def cuda_function(inputs, outputs, sm_count: int = 2):
    """``sp.function(..., backend='cuda')`` on the fake driver, its kernels simulated on the host."""
    driver = FakeDriver(sm_count)
    with use_driver(driver):
        f = sp.function(inputs, outputs, backend="cuda")
    driver.simulate(f.program.schedule.specs)
    return f, driver


def _check(inputs, outputs, values, rtol=1e-6, sm_count: int = 2):
    f, driver = cuda_function(inputs, outputs, sm_count)
    ref = sp.function(inputs, outputs, backend="numpy")
    got, want = f(*values), ref(*values)
    got, want = (got, want) if isinstance(got, list) else ([got], [want])
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol)
        else:
            np.testing.assert_array_equal(g, w)
    return f, driver


RNG = np.random.default_rng(0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_simulated_fused_elementwise_matches_numpy(dtype):
    x, y = st.vector("x", dtype=dtype), st.vector("y", dtype=dtype)
    out = st.exp(-x * x / 2) * st.sin(y) + st.log1p(y * y)
    n = 20_000  # more elements than threads in the grid: each thread takes several (grid-stride)
    values = [RNG.standard_normal(n).astype(dtype), RNG.standard_normal(n).astype(dtype)]
    f, driver = _check([x, y], out, values, rtol=1e-5 if dtype == "float32" else 1e-12, sm_count=1)
    name, grid, block = driver.launches[0]
    assert name.endswith("_c") and (grid, block) == elementwise_launch(n, 1) and grid[0] * block[0] < n


def test_simulated_integer_ops_and_casts_match_numpy():
    a, b = st.vector("a", dtype="int32"), st.vector("b", dtype="int32")
    outs = [a // b, a % b, (a * 7 - b).astype("int8"), (a > b) | (b == 0), st.cast(a, "float32") / 3]
    values = [RNG.integers(-50, 50, 1000).astype(np.int32), RNG.integers(-5, 5, 1000).astype(np.int32)]
    _check([a, b], outs, values)


def test_simulated_broadcasting_uses_strided_kernel():
    x, y = st.matrix("x", dtype="float64"), st.vector("y", dtype="float64")
    out = st.tanh(x) * y + 1
    values = [RNG.standard_normal((37, 45)), RNG.standard_normal(45)]
    f, driver = _check([x, y], out, values, rtol=1e-12)
    assert any(name.endswith("_s") for name, _, _ in driver.launches)


def test_integer_power_error_is_reported():
    a, b = st.vector("a", dtype="int64"), st.vector("b", dtype="int64")
    f, _ = cuda_function([a, b], a**b)
    np.testing.assert_array_equal(f(np.array([2, 3]), np.array([3, 2])), [8, 9])
    with pytest.raises(Exception, match="negative integer powers"):
        f(np.array([2, 3]), np.array([1, -1]))


@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("axis", [None, 1, 0])
def test_simulated_reductions_match_numpy(reduce, axis):
    dtype = "bool" if reduce in ("all", "any") else "float64"
    x = st.matrix("x", dtype=dtype)
    inner = x if dtype == "bool" else st.exp(x) * 0.5  # an absorbed producer (argmax: a kernel before it)
    out = getattr(st, reduce)(inner, axis=axis)
    data = RNG.standard_normal((23, 300)) * 0.1
    values = [data > 0.15 if dtype == "bool" else data]
    f, driver = _check([x], out, values, rtol=1e-10)
    kinds = {name[-3:] for name, _, _ in driver.launches}
    assert {"_rp", "_rf"} <= kinds


def test_argmax_argmin_take_the_first_extreme_or_the_first_nan():
    x = st.matrix("x", dtype="float32")
    data = RNG.integers(0, 3, (40, 600)).astype(np.float32)  # many ties
    data[3, 17] = data[3, 500] = data[5, 599] = np.nan
    outs = [st.argmax(x, axis=1), st.argmin(x, axis=0), st.argmax(x), st.argmin(x, axis=1, keepdims=True)]
    _check([x], outs, [data], sm_count=1)
    _check([x], outs, [np.full((3, 5000), np.inf, np.float32)])  # the identity's value: index 0 still wins


def test_full_reduction_splits_across_blocks_then_combines():
    x = st.vector("x", dtype="float32")
    n = 200_000
    values = [RNG.standard_normal(n).astype(np.float32)]
    f, driver = _check([x], st.sum(st.sqr(x)), values, rtol=1e-5, sm_count=2)
    (name, (gx, gy), block), final = driver.launches[0], driver.launches[1]
    assert name.endswith("_rp") and gx > 1 and gy == 1 and ((gx, gy), block) == reduction_launch(1, n, 2)
    assert final[0].endswith("_rf") and (final[1], final[2]) == final_launch(1, 2)


def test_simulated_softmax_and_gradient_match_numpy():
    x, w = st.matrix("x", dtype="float64"), st.matrix("w", dtype="float64")
    _check([x], _softmax(x), [RNG.standard_normal((16, 70))], rtol=1e-12)
    loss = st.tanh(x * w).sum() + (st.sigmoid(w) ** 2).mean()
    _check([x, w], [loss, sp.grad(loss, w)], [RNG.standard_normal((8, 9)), RNG.standard_normal((8, 9))], rtol=1e-10)


def test_edge_cases_match_numpy():
    x, y = st.matrix("x", dtype="float16"), st.vector("y", dtype="float16")
    values = [RNG.standard_normal((5, 7)).astype("float16"), RNG.standard_normal(7).astype("float16")]
    _check([x, y], [(x * y).sum(axis=0), st.exp(x) + y, (x * y).mean(keepdims=True)], values, rtol=2e-3)
    x, y = st.matrix("x", dtype="float32"), st.vector("y", dtype="float32")
    outs = [(x * y).max(axis=1), (x - y).min(axis=0, keepdims=True), st.exp(x - y).sum(axis=(0, 1))]
    _check([x, y], outs, [RNG.standard_normal((9, 13)).astype("float32"), RNG.standard_normal(13).astype("float32")])
    _check([x, y], [(x * y).sum(axis=1), st.exp(x) * y], [np.zeros((0, 3), "float32"), np.zeros(3, "float32")])
    a, v = st.dscalar("a"), st.dvector("v")
    _check([a, v], [a * v + 1, a * 2, (v * a).sum()], [2.5, RNG.standard_normal(10)])
    _check([v], [v.max(), v.min(), st.exp(v).sum()], [np.array([1.0, np.nan, 3.0])])  # nan propagates
    u, i = st.vector("u", dtype="uint64"), st.vector("i", dtype="int8")
    outs = [u + i, (i * 3).astype("uint64"), i.sum(), u.max(), (i > 0).all(), (i > 0).any(), st.cast(u, "float64")]
    _check([u, i], outs, [RNG.integers(0, 2**63, 50).astype("uint64"), RNG.integers(-128, 127, 50).astype("int8")])
    m = st.dmatrix("m")
    _check([m], [st.exp(m.T) + m.T, (m.T * 2).sum(axis=1)], [RNG.standard_normal((4, 6))])


def test_values_cross_the_bus_once():
    x = st.dvector("x")
    f, driver = cuda_function([x], [st.exp(x) + 1, st.sum(x * x), st.tanh(st.exp(x) + 1)])
    driver.copies.update(htod=0, dtoh=0)
    f(RNG.standard_normal(100))
    # x goes up once, though three kernels read it; the three outputs come back, nothing else does
    assert driver.copies == {"htod": 1, "dtoh": 3}


def test_host_fallback_nodes_are_listed_and_run():
    # an integer matmul has no GPU kernel (float32/float64 ones do: test_cuda_matmul.py)
    a, b = st.matrix("a", dtype="int64"), st.matrix("b", dtype="int64")
    f, _ = _check([a, b], st.tanh(st.dot(a, b)) + 1, [RNG.integers(-3, 3, (5, 6)), RNG.integers(-3, 3, (6, 4))])
    assert any(n.op in ("dot", "matmul") for n in f.program.fallback_nodes)
    assert f.program.kernels and all(k.name in f.program.ptx for k in f.program.kernels)
    text = io.StringIO()
    printing.debugprint(f, file=text)
    assert re.search(r"(dot|matmul).*\(numpy fallback\)", text.getvalue()), text.getvalue()


def test_kernel_objects_expose_ir_and_ptx():
    x = st.vector("x", dtype="float32")
    f, _ = cuda_function([x], st.exp(x) + 1)
    (k,) = f.program.kernels
    assert "ptx_kernel" in k.llvm_ir and ".entry" in k.asm


# --- launch configurations ----------------------------------------------------------------------------------
def test_launch_configurations():
    assert elementwise_launch(1, 80) == ((1, 1), (256, 1, 1))
    assert elementwise_launch(10**9, 80) == ((80 * 32, 1), (256, 1, 1))
    (gx, gy), block = reduction_launch(10**6, 7, 80)
    assert (gx, gy, block[0]) == (1, 65535, 32)
    (gx, gy), block = reduction_launch(1, 10**8, 132)
    assert gy == 1 and 1 < gx <= 1024 and block[0] == 256
    assert cuda_backend._supported_arch(9, 0) == "sm_90" and cuda_backend._supported_arch(8, 9) == "sm_89"


# --- without pycuda or a GPU ----------------------------------------------------------------------------------
def test_missing_pycuda_or_gpu_fails_at_function_time_with_one_clear_error():
    x = st.vector("x")
    try:
        import pycuda  # noqa: F401, PLC0415
    except ImportError:
        with pytest.raises(CudaUnavailable, match=r"pip install sympile\[cuda\]"):
            sp.function([x], x + 1, backend="cuda")
    driver = FakeDriver()
    driver.Device.count = lambda: 0
    with use_driver(driver), pytest.raises(CudaUnavailable, match="no CUDA-capable GPU"):
        sp.function([x], x + 1, backend="cuda")


# --- a real GPU ------------------------------------------------------------------------------------------------
@gpu
@pytest.mark.skipif(not _have_gpu(), reason="needs pycuda and an NVIDIA GPU")
def test_gpu_matches_numpy():
    x, y = st.matrix("x", dtype="float32"), st.vector("y", dtype="float32")
    outs = [st.exp(-x * x / 2) * st.sin(y) + 1, _softmax(x), st.sum(st.exp(x) * y), x.max(axis=0)]
    values = [RNG.standard_normal((300, 500)).astype(np.float32), RNG.standard_normal(500).astype(np.float32)]
    f = sp.function([x, y], outs, backend="cuda")
    ref = sp.function([x, y], outs, backend="numpy")
    for g, w in zip(f(*values), ref(*values)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_docstring_examples():
    import doctest  # noqa: PLC0415
    import importlib  # noqa: PLC0415

    for name in ("emit", "kernels", "launch", "ptx"):
        module = importlib.import_module(f"sympile.compiler.cuda.{name}")
        assert doctest.testmod(module).failed == 0, name
    assert doctest.testmod(cuda_backend).failed == 0
