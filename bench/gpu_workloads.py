"""The GPU workloads (issue 6): sympile ``backend='cuda'`` against CuPy and PyTorch on the same GPU.

G0 the bandwidth limit (a device-to-device copy and a STREAM triad by the peers); G1 = W1's expression, 10M
float64 and float32; G2 = W2's ``sum(exp(x)*y)``, 10M; G3 = W3's row softmax 4096x1024 float32; G4 = W4's SGD
step of the MLP 784-512-10, batch 256, float32. The data builders and numpy references are W1-W4's.

sympile runs twice per case. ``sympile[cuda] resident``: the inputs are shared variables (placed on the device
once, by the first call) and the result is the update of a shared variable, so nothing crosses the bus but the
operands of ops the CUDA backend computes on the host (gpu.py lists them). A ``Function`` takes only host
arrays as arguments (no device-array input API yet), so ``sympile[cuda] host in/out`` is the plain call: inputs
copied up and outputs copied back at every call.
Every GPU implementation synchronizes the device before its call returns; the peers' inputs are on the device
before timing. ``numpy out=`` (the CPU) is the yardstick of the ``vs numpy out=`` column, as in bench/run.py.

>>> [c.title for c in g1(GpuSettings(quick=True))]
['f64 n=100000', 'f32 n=100000']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from types import SimpleNamespace

import gpu_peers as gp
import numpy as np
from elementwise import _rng, _sympile_w1_graph, w1_numpy, w1_numpy_out
from harness import BASELINE, Case, Impl, Settings
from nn import LR, _mlp_loss, mlp_data, mlp_step_numpy, mlp_step_numpy_out, softmax_numpy
from sympile_impl import sympile_impl

BANDWIDTH_WORKLOAD = "G0"
BANDWIDTH_WORKLOADS = ("G1", "G2")  # shown as a share of G0's best peer bandwidth
RESIDENT, HOST = "sympile[cuda] resident", "sympile[cuda] host in/out"
PEER_PREFIXES = ("memcpy_dtod", "cupy", "torch")  # G0 rows whose bandwidth is the limit (not sympile's)
#: host nodes that move no array over the bus: shape arithmetic on a few integers, device views (dimshuffle, alloc
#: of a broadcast value) and sum_to, which the CUDA backend sums on the GPU (runtime/cuda_backend.py)
METADATA_OPS = {"shape", "getitem", "stack", "dimshuffle", "alloc", "sum_to"}
#: per workload, the ops its resident sympile functions compute on the host (CudaProgram.fallback_nodes)
HOST_OPS: dict[str, set] = {}


@dataclasses.dataclass
class GpuSettings(Settings):
    """bench/run.py's settings plus ``tiny`` sizes (for the simulated driver of the smoke test)."""

    backend: str = "cuda"
    tiny: bool = False


def _sizes(s: GpuSettings, tiny, quick, full):
    return tiny if s.tiny else quick if s.quick else full


# --- sympile ----------------------------------------------------------------------------------------------------
def sympile_host(graph, args) -> Impl:
    """The plain call on host arrays (bench/sympile_impl.py's Impl): transfers both ways at every call."""
    return dataclasses.replace(sympile_impl("cuda", graph, args), name=HOST)


def sympile_resident(workload: str, graph, args) -> Impl:
    """``graph()``'s inputs replaced (``givens``) by shared variables holding ``args`` and each output stored
    into a shared variable by ``updates``: values stay in GPU memory, so a call is the kernels alone.

    >>> impl = sympile_resident("G1", lambda: _sympile_w1_graph("float64"), [np.zeros(3)] * 3)
    >>> impl.name
    'sympile[cuda] resident'
    """

    def build():
        import sympile as sp

        gp.sympile_device()  # 'n/a (why)' rather than an error when CUDA is missing
        inputs, outputs = graph()
        single = not isinstance(outputs, (list, tuple))
        outs = [outputs] if single else list(outputs)
        givens = {v: sp.shared(a, name=f"{v.name}_dev") for v, a in zip(inputs, args)}
        slots = [sp.shared(np.zeros((0,) * o.ndim, o.dtype), name=f"out{i}") for i, o in enumerate(outs)]
        f = sp.function([], [], updates=dict(zip(slots, outs)), givens=givens, backend="cuda")
        note_host_ops(workload, f)
        fetch = [gp.OnDevice(s.get_value) for s in slots]

        def run():
            f()
            gp.sympile_sync()
            return fetch[0] if single else fetch

        return run

    return Impl(RESIDENT, build)


# --- G0: the bandwidth limit -------------------------------------------------------------------------------------
def g0(settings: GpuSettings) -> Iterator[Case]:
    n = _sizes(settings, 4096, 1 << 20, 1 << 26)  # full: 512 MiB per float64 array, far beyond any L2
    rng = _rng()
    b, c, s = rng.standard_normal(n), rng.standard_normal(n), 3.0

    def driver_copy():  # sympile's driver: pycuda's cuMemcpyDtoD, or CuPy's (bench/cupy_driver.py)
        from sympile.runtime.cuda_backend import DeviceArray

        dev = gp.sympile_device()
        src, dst = DeviceArray.from_host(dev, b), DeviceArray(dev, b.shape, b.dtype)

        def run():
            dev.drv.memcpy_dtod(dst.allocation, src.allocation, src.nbytes)
            dev.context.synchronize()
            return gp.OnDevice(dst.get)

        return run

    def cupy_copy():
        cp = gp.cupy()
        src = cp.asarray(b)
        dst = cp.empty_like(src)

        def run():
            dst[...] = src
            gp.cupy_sync()
            return gp.cupy_host(dst)

        return run

    def torch_copy():
        torch = gp.torch()
        src = torch.from_numpy(b).cuda()
        dst = torch.empty_like(src)

        def run():
            dst.copy_(src)
            gp.torch_sync()
            return gp.torch_host(dst)

        return run

    # bytes read + written: what the hardware moves (a copy reads n and writes n elements)
    impls = [Impl("memcpy_dtod", driver_copy), Impl("cupy", cupy_copy), Impl("torch", torch_copy)]
    yield Case(BANDWIDTH_WORKLOAD, f"copy f64 n={n}", impls, expected=b, rtol=0, bytes_moved=2 * n * 8)

    def cupy_triad():
        cp = gp.cupy()
        kernel = cp.ElementwiseKernel("T b, T c, T s", "T a", "a = b + s * c", "triad")
        bb, cc, a = cp.asarray(b), cp.asarray(c), cp.empty(n)

        def run():
            kernel(bb, cc, np.float64(s), a)
            gp.cupy_sync()
            return gp.cupy_host(a)

        return run

    def torch_triad():
        torch = gp.torch()
        bb, cc = torch.from_numpy(b).cuda(), torch.from_numpy(c).cuda()
        a = torch.empty_like(bb)

        def run():
            torch.add(bb, cc, alpha=s, out=a)  # one kernel: a = b + s*c
            gp.torch_sync()
            return gp.torch_host(a)

        return run

    def graph():
        import sympile.tensor as st

        bb, cc = st.dvector("b"), st.dvector("c")
        return [bb, cc], bb + s * cc

    impls = [Impl("cupy", cupy_triad), Impl("torch", torch_triad), sympile_resident("G0", graph, [b, c])]
    yield Case(BANDWIDTH_WORKLOAD, f"triad f64 n={n}", impls, expected=lambda: b + s * c, rtol=1e-12,
               bytes_moved=3 * n * 8)  # fmt: skip


def bandwidth_limit(rows) -> float | None:
    """The best GB/s a peer reached in G0 (fastest sample: what the memory can do), or None without one."""
    speeds = [r.bytes_moved / r.min_s / 1e9 for r in rows if r.workload == BANDWIDTH_WORKLOAD and r.min_s
              and r.bytes_moved and r.impl.startswith(PEER_PREFIXES) and r.status.startswith("ok")]  # fmt: skip
    return max(speeds) if speeds else None


def add_bandwidth_share(rows, limit: float | None) -> None:
    """``bandwidth_share`` of the G0-G2 rows: bytes moved / median / the limit (G0's own rows included, so the
    table shows how close each peer's median comes to the best sample)."""
    if limit:
        for r in rows:
            if r.workload in (BANDWIDTH_WORKLOAD, *BANDWIDTH_WORKLOADS) and r.gbps:
                r.bandwidth_share = r.gbps / limit


# --- G1: exp(-x*x/2)*sin(y) + log1p(z*z) ------------------------------------------------------------------------
def g1(settings: GpuSettings) -> Iterator[Case]:
    n = _sizes(settings, 2000, 100_000, 10_000_000)
    for dtype, tol in ((np.float64, (1e-7, 1e-12)), (np.float32, (1e-4, 1e-6))):
        rng = _rng()
        x, y, z = (rng.standard_normal(n).astype(dtype) * s for s in (1.0, 2.0, 3.0))

        def numpy_out(x=x, y=y, z=z):
            run = w1_numpy_out(x)
            return lambda: run(x, y, z)

        def cupy(x=x, y=y, z=z):
            cp = gp.cupy()
            args = [cp.asarray(a) for a in (x, y, z)]

            def run():
                out = w1_numpy(*args)  # numpy's own code: np.exp on a CuPy array runs CuPy's kernel (NEP 13/18)
                gp.cupy_sync()
                return gp.cupy_host(out)

            return run

        def torch(x=x, y=y, z=z):
            t = gp.torch()
            a, b, c = (t.from_numpy(v).cuda() for v in (x, y, z))

            def run():
                out = t.exp(-a * a / 2) * t.sin(b) + t.log1p(c * c)
                gp.torch_sync()
                return gp.torch_host(out)

            return run

        graph = lambda dtype=dtype: _sympile_w1_graph(np.dtype(dtype).name)  # noqa: E731
        impls = [Impl(BASELINE, numpy_out), Impl("cupy", cupy), Impl("torch", torch),
                 sympile_resident("G1", graph, [x, y, z]), sympile_host(graph, [x, y, z])]  # fmt: skip
        name = f"{np.dtype(dtype).name[0]}{np.dtype(dtype).itemsize * 8} n={n}"
        yield Case("G1", name, impls, expected=lambda x=x, y=y, z=z: w1_numpy(x, y, z), rtol=tol[0], atol=tol[1],
                   bytes_moved=4 * n * np.dtype(dtype).itemsize)  # fmt: skip
        del x, y, z


# --- G2: sum(exp(x)*y) ------------------------------------------------------------------------------------------
def g2(settings: GpuSettings) -> Iterator[Case]:
    n = _sizes(settings, 2000, 100_000, 10_000_000)
    rng = _rng()
    x, y = rng.standard_normal(n), rng.standard_normal(n)

    def numpy_out():
        buf = np.empty_like(x)
        return lambda: np.dot(np.exp(x, out=buf), y)

    def cupy():
        cp = gp.cupy()
        a, b = cp.asarray(x), cp.asarray(y)

        def run():
            out = cp.sum(cp.exp(a) * b)
            gp.cupy_sync()
            return gp.cupy_host(out)

        return run

    def torch():
        t = gp.torch()
        a, b = t.from_numpy(x).cuda(), t.from_numpy(y).cuda()

        def run():
            out = t.sum(t.exp(a) * b)
            gp.torch_sync()
            return gp.torch_host(out)

        return run

    def graph():
        import sympile.tensor as st

        a, b = st.dvector("x"), st.dvector("y")
        return [a, b], st.sum(st.exp(a) * b)

    impls = [Impl(BASELINE, numpy_out), Impl("cupy", cupy), Impl("torch", torch), sympile_resident("G2", graph, [x, y]),
             sympile_host(graph, [x, y])]  # fmt: skip
    yield Case("G2", f"f64 n={n}", impls, expected=lambda: np.sum(np.exp(x) * y), rtol=1e-9, bytes_moved=2 * n * 8)


# --- G3: row softmax ----------------------------------------------------------------------------------------------
def g3(settings: GpuSettings) -> Iterator[Case]:
    rows, cols = _sizes(settings, (8, 64), (256, 1024), (4096, 1024))
    x = (np.random.default_rng(0).standard_normal((rows, cols)) * 4).astype(np.float32)

    def numpy_out():
        m, s, out = np.empty((rows, 1), x.dtype), np.empty((rows, 1), x.dtype), np.empty_like(x)

        def run():
            np.max(x, axis=1, keepdims=True, out=m)
            np.exp(np.subtract(x, m, out=out), out=out)
            return np.divide(out, np.sum(out, axis=1, keepdims=True, out=s), out=out)

        return run

    def cupy():
        cp = gp.cupy()
        a = cp.asarray(x)

        def run():
            out = softmax_numpy(a)  # numpy's code on a CuPy array: CuPy's kernels
            gp.cupy_sync()
            return gp.cupy_host(out)

        return run

    def torch():
        t = gp.torch()
        a = t.from_numpy(x).cuda()

        def run():
            out = t.softmax(a, dim=1)  # one fused kernel: what a PyTorch user writes
            gp.torch_sync()
            return gp.torch_host(out)

        return run

    def graph():
        import sympile.tensor as st

        a = st.fmatrix("x")
        # the softmax op is computed by numpy on the host today (CudaProgram.fallback_nodes lists it; the optimizer
        # also turns exp(x - max) / sum into it), so sympile's rows include a round trip of x over the bus
        return [a], st.softmax(a, axis=-1)

    impls = [Impl(BASELINE, numpy_out), Impl("cupy", cupy), Impl("torch", torch), sympile_resident("G3", graph, [x]),
             sympile_host(graph, [x])]  # fmt: skip
    yield Case("G3", f"f32 {rows}x{cols}", impls, expected=lambda: softmax_numpy(x), rtol=1e-4, atol=1e-7,
               bytes_moved=2 * x.nbytes)  # fmt: skip


# --- G4: one SGD step of the MLP ----------------------------------------------------------------------------------
def note_host_ops(workload: str, f) -> None:
    """Record which ops of ``f`` the CUDA backend computes on the host (gpu.py prints them under the table)."""
    HOST_OPS.setdefault(workload, set()).update(n.op for n in f.program.fallback_nodes if n.op not in METADATA_OPS)


def _sympile_mlp(X, Y, W1, b1, W2, b2):
    """The loss of W4's MLP and its SGD updates as sympile expressions of the given variables."""
    import sympile as sp
    import sympile.tensor as st

    params = [W1, b1, W2, b2]
    loss = _mlp_loss(st, X, Y, W1, b1, W2, b2, st.log_softmax)
    return loss, [p - LR * g for p, g in zip(params, sp.grad(loss, params))]


def g4(settings: GpuSettings) -> Iterator[Case]:
    sizes = (16, 8, 4) if settings.tiny else (784, 512, 10)
    batch = _sizes(settings, 4, 32, 256)
    data = mlp_data(batch, sizes)

    def resident():
        import sympile as sp

        gp.sympile_device()
        X, Y, *params = (sp.shared(a, name=n) for a, n in zip(data, ("X", "Y", "W1", "b1", "W2", "b2")))
        loss, new = _sympile_mlp(X, Y, *params)
        # the parameters are updated in GPU memory; only the loss (a scalar) comes back
        f = sp.function([], loss, updates=dict(zip(params, new)), backend="cuda")
        note_host_ops("G4", f)
        fetch = [gp.OnDevice(p.get_value) for p in params]

        def run():
            out = f()
            gp.sympile_sync()
            return out, *fetch

        return run

    def graph():
        import sympile.tensor as st

        X, Y, W1, W2 = (st.fmatrix(n) for n in ("X", "Y", "W1", "W2"))
        b1, b2 = st.fvector("b1"), st.fvector("b2")
        loss, new = _sympile_mlp(X, Y, W1, b1, W2, b2)
        return [X, Y, W1, b1, W2, b2], [loss, *new]

    def cupy():
        cp = gp.cupy()
        args = [cp.asarray(a) for a in data]

        def run():
            out = mlp_step_numpy(*args)  # W4's hand-written step, numpy's code on CuPy arrays
            gp.cupy_sync()
            return tuple(gp.cupy_host(o) for o in out)

        return run

    def torch():
        t = gp.torch()
        X, Y, *params = (t.from_numpy(a).cuda() for a in data)
        for p in params:
            p.requires_grad_(True)
        lib = SimpleNamespace(tanh=t.tanh, mean=t.mean, sum=lambda v, axis: t.sum(v, dim=axis))

        def run():
            loss = _mlp_loss(lib, X, Y, *params, lambda v, axis: t.log_softmax(v, dim=axis))
            grads = t.autograd.grad(loss, params)
            with t.no_grad():
                for p, g in zip(params, grads):
                    p.sub_(g, alpha=float(LR))  # in place: the weights stay on the device, like sympile's
            gp.torch_sync()
            return (gp.torch_host(loss), *(gp.torch_host(p) for p in params))

        return run

    impls = [Impl(BASELINE, lambda: mlp_step_numpy_out(*data)), Impl("cupy", cupy), Impl("torch", torch),
             Impl(RESIDENT, resident), sympile_host(graph, list(data))]  # fmt: skip
    d, h, c = sizes
    yield Case("G4", f"f32 {d}-{h}-{c} batch {batch}", impls, expected=lambda: mlp_step_numpy(*data), rtol=1e-3,
               atol=1e-5)  # fmt: skip


WORKLOADS = {"G0": g0, "G1": g1, "G2": g2, "G3": g3, "G4": g4}
