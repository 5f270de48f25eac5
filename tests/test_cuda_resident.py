"""The CUDA backend's state between calls and processes, without a GPU: shared variables resident on the device
(through the fake pycuda driver of test_cuda_ptx.py), the PTX disk cache, and where ``ptxas`` is found."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from test_cuda_ptx import FakeDriver, cuda_function

import sympile as sp
import sympile.tensor as st
from sympile.compiler.cuda import ptx as cuda_ptx
from sympile.runtime import cuda_backend
from sympile.runtime.cuda_backend import DeviceArray, use_driver

RNG = np.random.default_rng(2)


def _cuda(inputs, outputs, updates=None, driver=None):
    driver = driver or FakeDriver()
    with use_driver(driver):
        f = sp.function(inputs, outputs, updates=updates, backend="cuda")
    driver.simulate(f.program.schedule.specs)
    return f, driver


def _regression(w0):
    x, y = st.dmatrix("x"), st.dmatrix("y")
    w = sp.shared(w0, name="w")
    loss = ((x @ w - y) ** 2).mean()
    return [x, y], w, loss, {w: w - 0.1 * sp.grad(loss, w)}


# --- shared variables on the device -------------------------------------------------------------------------------
def test_sgd_updates_keep_the_shared_value_on_the_device():
    w0 = RNG.standard_normal((5, 3))
    ins, w, loss, updates = _regression(w0)
    f, driver = _cuda(ins, loss, updates)
    ref_ins, ref_w, ref_loss, ref_updates = _regression(w0)
    ref = sp.function(ref_ins, ref_loss, updates=ref_updates, backend="numpy")
    x, y = RNG.standard_normal((20, 5)), RNG.standard_normal((20, 3))
    counts = []
    for _ in range(4):
        driver.copies.update(htod=0, dtoh=0)
        np.testing.assert_allclose(f(x, y), ref(x, y), rtol=1e-12)
        counts.append(dict(driver.copies))
    # w goes up on the first call only; x, y and one host scalar (the mean's 1/n) every call; the loss comes back
    assert counts == [{"htod": 4, "dtoh": 1}] + [{"htod": 3, "dtoh": 1}] * 3
    assert isinstance(w.storage.raw, DeviceArray)
    value = w.get_value()
    assert type(value) is np.ndarray and value.dtype == np.float64
    np.testing.assert_allclose(value, ref_w.get_value(), rtol=1e-12)
    assert w.get_value(borrow=True) is not w.get_value(borrow=True)  # always a host copy of device memory


def test_set_value_replaces_the_device_value():
    ins, w, loss, updates = _regression(np.zeros((4, 2)))
    f, driver = _cuda(ins, [loss], updates)
    x, y = RNG.standard_normal((6, 4)), RNG.standard_normal((6, 2))
    f(x, y)
    new = RNG.standard_normal((4, 2))
    w.set_value(new)
    assert type(w.storage.raw) is np.ndarray
    driver.copies.update(htod=0, dtoh=0)
    (got,) = f(x, y)
    assert driver.copies["htod"] == 4  # the new value went up once
    np.testing.assert_allclose(got, ((x @ new - y) ** 2).mean(), rtol=1e-12)


def test_read_only_shared_value_goes_up_once_and_other_backends_see_it():
    b = sp.shared(RNG.standard_normal(7), name="b")
    x = st.dvector("x")
    f, driver = _cuda([x], st.exp(x) + b)
    v, want = RNG.standard_normal(7), None
    for _ in range(3):
        want = np.exp(v) + b.get_value() if want is None else want  # (get_value copies back: once, before)
        driver.copies.update(htod=0, dtoh=0)
        np.testing.assert_allclose(f(v), want, rtol=1e-12)
    assert driver.copies == {"htod": 1, "dtoh": 1}  # only x up, the result back
    # a CPU/numpy function reading the same shared variable gets it on the host
    g = sp.function([x], x * b, backend="numpy")
    np.testing.assert_allclose(g(v), v * b.get_value(), rtol=1e-12)
    # and an update by a numpy function puts a host value back, which the CUDA function takes up again
    h = sp.function([], [], updates={b: b * 2}, backend="numpy")
    before = b.get_value()
    h()
    np.testing.assert_allclose(f(v), np.exp(v) + 2 * before, rtol=1e-12)


def test_shared_value_moves_between_devices():
    b = sp.shared(np.arange(4.0), name="b")
    x = st.dvector("x")
    f1, _ = _cuda([x], x + b, updates={b: b + 1})
    f2, _ = _cuda([x], x * b)  # another (fake) device
    f1(np.zeros(4))
    np.testing.assert_allclose(f2(np.ones(4)), np.arange(4.0) + 1)
    np.testing.assert_allclose(b.get_value(), np.arange(4.0) + 1)


# --- PTX disk cache -----------------------------------------------------------------------------------------------
def test_second_program_loads_ptx_from_the_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMPILE_CACHE_DIR", str(tmp_path))

    def graph():
        x, w = st.fmatrix("x"), st.fmatrix("w")
        return [x, w], [st.tanh(x @ w).sum(axis=1)]

    ins, outs = graph()
    f1, _ = cuda_function(ins, outs)
    values = [RNG.standard_normal((6, 5)).astype(np.float32), RNG.standard_normal((5, 4)).astype(np.float32)]
    first = f1(*values)
    assert any(p.name.endswith(".entry") for p in tmp_path.rglob("*"))
    # a new process: nothing in memory, and LLVM must not be asked for the PTX again
    cuda_backend._PTX.clear()

    def no_llvm(*args, **kwargs):
        raise AssertionError("PTX generated again: the disk cache missed")

    monkeypatch.setattr(cuda_backend, "to_ptx", no_llvm)
    ins, outs = graph()  # the same graph from new variables
    f2, driver = cuda_function(ins, outs)
    np.testing.assert_array_equal(f2(*values), first)
    assert driver.loaded == [f1.program.ptx]
    # another architecture is another entry
    cuda_backend._PTX.clear()
    driver = FakeDriver(capability=(9, 0))
    with use_driver(driver):
        f3 = sp.function(ins, outs, backend="cuda")
    with pytest.raises(AssertionError, match="disk cache missed"):
        assert f3.program.ptx


def test_ptx_cache_key_covers_the_code_generator():
    target = cuda_backend.ptx_target("sm_80")
    assert target["cpu"] == "sm_80" and target["triple"] == "nvptx64-nvidia-cuda"
    assert len(target["codegen"]) == 16 and target["codegen"] == cuda_backend.codegen_fingerprint()


# --- ptxas discovery ----------------------------------------------------------------------------------------------
def _exe(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_ptxas_search_order(tmp_path):
    home = _exe(tmp_path / "cuda" / "bin" / "ptxas")
    on_path = _exe(tmp_path / "path" / "ptxas")
    wheel13 = _exe(tmp_path / "site" / "nvidia" / "cu13" / "bin" / "ptxas")  # nvidia-cuda-nvcc (CUDA 13)
    _exe(tmp_path / "site" / "nvidia" / "cu12" / "bin" / "ptxas")
    wheel12 = _exe(tmp_path / "old" / "nvidia" / "cuda_nvcc" / "bin" / "ptxas")  # nvidia-cuda-nvcc-cu12
    site = [str(tmp_path / "empty"), str(tmp_path / "site")]
    env = {"CUDA_HOME": str(tmp_path / "cuda"), "PATH": str(tmp_path / "path")}
    assert cuda_ptx.find_ptxas(env, site) == home
    assert cuda_ptx.find_ptxas({"CUDA_PATH": str(tmp_path / "cuda")}, site) == home
    assert cuda_ptx.find_ptxas({**env, "CUDA_HOME": str(tmp_path / "nowhere")}, site) == on_path
    assert cuda_ptx.find_ptxas({}, site) == wheel13  # the newest CUDA wheel first
    assert cuda_ptx.find_ptxas({}, [str(tmp_path / "old")]) == wheel12
    os.chmod(wheel12, 0o644)  # not executable: not taken
    assert cuda_ptx.find_ptxas({}, [str(tmp_path / "old")]) is None
    assert cuda_ptx.find_ptxas({}, []) is None


# --- host nodes that need no transfer -----------------------------------------------------------------------------
def test_views_and_shapes_of_device_values_stay_on_the_device():
    x = st.dmatrix("x")
    e = st.exp(x)
    outs = [e.reshape((-1,)) * 2, e.dimshuffle(0, "x", 1) + 1, e.reshape((8, -1)) @ e.reshape((3, 8)), e.shape[1] * e]
    f, driver = cuda_function([x], outs)
    ref = sp.function([x], outs, backend="numpy")
    v = RNG.standard_normal((4, 6))
    driver.copies.update(htod=0, dtoh=0)
    for got, want in zip(f(v), ref(v)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # reshape, dimshuffle and shape are host nodes computed from e's metadata: only x goes up (and e.shape[1],
    # a host scalar), only the four outputs come back
    assert {n.op for n in f.program.fallback_nodes} >= {"reshape", "dimshuffle", "shape"}
    assert driver.copies == {"htod": 2, "dtoh": 4}
    with pytest.raises(ValueError, match="cannot reshape"):  # numpy's error, from numpy
        f(np.zeros((5, 5)))


def test_transposes_of_device_values_are_strided_views():
    x, v, u = st.dmatrix("x"), st.dvector("v"), st.dvector("u")
    e = st.exp(x)
    outs = [e.T, e.T * 3 + v[:, None], e.T.sum(axis=1), st.tanh(e.T).max(axis=0), e.dimshuffle(1, "x", 0) * 2]
    outs.append(st.dot(st.sqrt(e).T, u))  # (the matmul kernel absorbs this transpose: test_cuda_matmul.py)
    f, driver = cuda_function([x, v, u], outs)
    ref = sp.function([x, v, u], outs, backend="numpy")
    values = [RNG.standard_normal((5, 7)), RNG.standard_normal(7), RNG.standard_normal(5)]
    driver.copies.update(htod=0, dtoh=0)
    for got, want in zip(f(*values), ref(*values)):
        assert got.shape == want.shape and got.flags.c_contiguous
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert driver.copies["dtoh"] == len(outs)  # e is never copied back to be transposed


def test_transposed_update_of_a_shared_square_matrix():
    w = sp.shared(np.arange(12.0).reshape(3, 4)[:, :3].copy(), name="w")
    x = st.dmatrix("x")
    # w <- w.T: the stored value becomes a transposed view of the same device memory, which the next call's
    # matmul and transpose read through strides
    f, driver = _cuda([x], [x @ w, st.exp(w) * 1], updates={w: w.T})
    want = w.get_value()
    for i in range(3):
        driver.copies.update(htod=0, dtoh=0)
        got, e = f(np.eye(3) + 1)
        np.testing.assert_allclose(got, (np.eye(3) + 1) @ want, rtol=1e-12)
        np.testing.assert_allclose(e, np.exp(want), rtol=1e-12)
        assert driver.copies == {"htod": 1 + (i == 0), "dtoh": 2}
        assert w.storage.raw.contiguous == (i % 2 == 1)
        want = want.T
    np.testing.assert_array_equal(w.get_value(), want)
