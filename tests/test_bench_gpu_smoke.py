"""The GPU benchmark (bench/gpu.py) without a GPU: one clear line and exit 0, and every sympile code path of its
workloads run on the fake pycuda driver of test_cuda_ptx.py (kernels simulated on the CPU) at toy sizes.

Not a timing test: the harness checks each result against numpy (allclose) before timing it, so a row whose
status is 'ok' computed the right values; CuPy and PyTorch are missing here and must say so in their rows.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_cuda_ptx import FakeDriver, _have_gpu

from sympile.runtime import cuda_backend
from sympile.runtime.cuda_backend import use_driver

ROOT = Path(__file__).resolve().parents[1]
HAVE_GPU = _have_gpu()


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SYMPILE_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "bench/gpu.py", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_quick_run_without_a_gpu_says_why_in_one_line_and_exits_0(tmp_path):
    if HAVE_GPU:  # a lent GPU machine: the real thing, at toy sizes
        proc = _run("--tiny", "--only", "G1,G2", "--budget", "0.01", tmp_path=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "sympile[cuda] resident" in proc.stdout and "MISMATCH" not in proc.stdout, proc.stdout
        return
    proc = _run("--quick", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench-gpu: skipped, no GPU: "), proc.stdout
    assert "pycuda" in lines[0] or "GPU" in lines[0][len("bench-gpu: skipped, no GPU: ") :]


class _Driver(FakeDriver):
    """The fake driver plus what the benchmark also calls: a device-to-device copy and a context to synchronize."""

    def __init__(self):
        super().__init__()
        self.Device(0).retain_primary_context().synchronize = lambda: None

    def memcpy_dtod(self, dest, src, nbytes: int):
        ctypes.memmove(int(dest), int(src), nbytes)


@pytest.fixture
def simulated(monkeypatch, tmp_path):
    """Every CUDA program built in the test runs on a fake driver, its kernels simulated on the host; the bench
    modules importable, and the thread variables bench/machine.py sets restored afterwards."""
    monkeypatch.setenv("SYMPILE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    saved = dict(os.environ)
    driver, keep = _Driver(), []
    build = cuda_backend.CudaProgram.__init__

    def init(self, inputs, outputs):
        build(self, inputs, outputs)
        driver.simulate(self.schedule.specs)
        keep.append(driver._jit)  # each program's simulated kernels live as long as the test

    monkeypatch.setattr(cuda_backend.CudaProgram, "__init__", init)
    with use_driver(driver):
        yield driver
    os.environ.clear()
    os.environ.update(saved)


def test_every_workload_runs_on_the_simulated_driver_and_matches_numpy(simulated, tmp_path, capsys):
    import gpu

    out_json = tmp_path / "gpu.json"
    assert gpu.main(["--tiny", "--budget", "0.005", "--json", str(out_json)]) == 0
    table = capsys.readouterr().out
    assert "GPU: sm_80, 2 multiprocessors" in table
    rows = json.loads(out_json.read_text())["rows"]
    by_case: dict = {}
    for r in rows:
        by_case.setdefault(r["workload"], set()).add(r["impl"])
        if r["impl"].startswith(("sympile", "numpy", "memcpy_dtod")):
            assert r["status"] == "ok", r  # computed, checked against numpy, timed
            assert r["median_s"] > 0
        else:  # CuPy, PyTorch: missing here, and the row says why
            assert r["status"].startswith("n/a") or r["status"] == "ok", r
    assert set(by_case) == {"G0", "G1", "G2", "G3", "G4"}
    for w in ("G1", "G2", "G3", "G4"):
        assert {"numpy out=", "cupy", "torch", "sympile[cuda] resident", "sympile[cuda] host in/out"} <= by_case[w]
    assert len([r for r in rows if r["workload"] == "G1"]) == 2 * 5  # float64 and float32
    # G0's driver copy is the bandwidth limit here, and G1/G2 are shown as a share of it
    assert json.loads(out_json.read_text())["bandwidth_gbps"] > 0
    assert all(r["bandwidth_share"] for r in rows if r["workload"] in ("G1", "G2") and r["gbps"])
    # the ops sympile still computes on the host, if any, are named under the table (G3's softmax runs on the GPU)
    assert "G3 (" not in table


def test_resident_calls_keep_values_on_the_device(simulated):
    """G1 and G2 resident: after the first call placed the shared inputs, a call moves nothing over the bus; the
    host in/out call copies each input up and the result back."""
    import gpu_workloads as gw

    settings = gw.GpuSettings(quick=True, tiny=True)
    for workload, n_inputs in ((gw.g1, 3), (gw.g2, 2)):
        case = next(iter(workload(settings)))
        impls = {i.name: i for i in case.impls}
        want = case.expected()
        for name, copies in ((gw.RESIDENT, {"htod": 0, "dtoh": 0}), (gw.HOST, {"htod": n_inputs, "dtoh": 1})):
            run = impls[name].build()
            run()
            simulated.copies.update(htod=0, dtoh=0)
            got = run()
            assert simulated.copies == copies, (case.workload, name)
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-9)


def _stub_cupy(fake: FakeDriver):
    """The few CuPy calls bench/cupy_driver.py makes, over the fake driver's host memory and simulated kernels."""
    buffers = []

    def alloc(nbytes):
        buf = np.zeros(nbytes + 8, np.uint8)
        buffers.append(buf)  # (never freed: a test's worth)
        return SimpleNamespace(ptr=buf.ctypes.data)

    def memcpy(dst, src, nbytes, kind):
        assert kind in (1, 2, 3)
        ctypes.memmove(dst, src, nbytes)

    class Module:
        def load(self, image: bytes):
            assert image.endswith(b"\0") and b".entry" in image

        def get_function(self, name):
            def launch(grid, block, args, shared_mem=0):
                assert all(isinstance(a, (np.uintp, np.int64)) for a in args) and shared_mem == 0
                fake.launches.append((name, grid, block))
                fake.simulators[name](block[0], grid[0], grid[1], *(int(a) for a in args))

            return launch

    props = {"multiProcessorCount": 3, "major": 9, "minor": 0, "name": b"Stub GPU", "totalGlobalMem": 2**34}
    runtime = SimpleNamespace(getDeviceCount=lambda: 1, getDeviceProperties=lambda i: props, memcpy=memcpy,
                              memset=lambda ptr, v, n: ctypes.memset(ptr, v, n), deviceSynchronize=lambda: None,
                              driverGetVersion=lambda: 13000, runtimeGetVersion=lambda: 13000)  # fmt: skip
    cuda = SimpleNamespace(runtime=runtime, alloc=alloc, Device=lambda i: SimpleNamespace(use=lambda: None),
                           function=SimpleNamespace(Module=Module))  # fmt: skip
    return SimpleNamespace(cuda=cuda)


def test_cupy_driver_translates_the_runtime_calls(simulated):
    """bench/cupy_driver.py (sympile through CuPy where pycuda is missing) against a stub of the CuPy calls it
    makes: G1 and G4 resident and host in/out, and G0's device copy, match numpy."""
    import cupy_driver
    import gpu_peers
    import gpu_workloads as gw

    shim = cupy_driver.CupyDriver(_stub_cupy(simulated))
    settings = gw.GpuSettings(quick=True, tiny=True)
    with use_driver(shim):
        assert "Stub GPU, sm_90" in gpu_peers.describe_gpu() and gpu_peers.sympile_device().sm_count == 3
        cases = [next(iter(gw.g0(settings))), next(iter(gw.g1(settings))), next(iter(gw.g4(settings)))]
        for case in cases:
            for impl in case.impls:
                if impl.name.startswith(("sympile", "memcpy")):
                    got = impl.build()()
                    want = case.expected() if callable(case.expected) else case.expected
                    got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
                    for g, w in zip(got, want):
                        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-3, atol=1e-5)
    assert any(name.endswith("_mm") for name, _, _ in simulated.launches)  # G4's matmuls ran as kernels
