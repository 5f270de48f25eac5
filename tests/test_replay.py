"""Captured calls (runtime/replay.py): the second call with a layout is recorded, later ones replayed natively.

Every replayed result is checked against numpy (or the step-by-step path), with new data at each call, so a
replay that reused a stale pointer or a stale buffer would show.
"""

import numpy as np
import pytest
from oracle import run_in_threads

import sympile
import sympile.tensor as st
from sympile.compiler.errors import GraphValueError
from sympile.runtime import replay
from sympile.runtime.blas import gemm_address

needs_blas = pytest.mark.skipif(gemm_address("float32") is None, reason="numpy has no OpenBLAS with 64-bit sizes")


def plans(f) -> list:
    return [p for p in f.program._replays.values() if type(p) is replay.Plan]


def mlp_step():
    X, Y, W1, W2 = (st.fmatrix(n) for n in ("X", "Y", "W1", "W2"))
    b1, b2 = st.fvector("b1"), st.fvector("b2")
    params = [W1, b1, W2, b2]
    h = st.tanh(X @ W1 + b1)
    loss = st.mean(-st.sum(Y * st.log_softmax(h @ W2 + b2, axis=1), axis=1))
    grads = sympile.grad(loss, params)
    return sympile.function([X, Y, *params], [loss, *(p - np.float32(0.1) * g for p, g in zip(params, grads))])


def mlp_numpy(X, Y, W1, b1, W2, b2):
    h = np.tanh(X @ W1 + b1)
    z = h @ W2 + b2
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = np.float32(X.shape[0])
    d = (np.exp(logp) - Y) / n
    dz = (d @ W2.T) * (1 - h * h)
    lr = np.float32(0.1)
    return [-(Y * logp).sum() / n, W1 - lr * (X.T @ dz), b1 - lr * dz.sum(0), W2 - lr * (h.T @ d), b2 - lr * d.sum(0)]


def mlp_data(rng, batch=16, sizes=(12, 8, 5)):
    d, hid, c = sizes
    f32 = np.float32
    X = rng.standard_normal((batch, d)).astype(f32)
    Y = np.eye(c, dtype=f32)[rng.integers(0, c, batch)]
    W1, W2 = rng.standard_normal((d, hid)).astype(f32), rng.standard_normal((hid, c)).astype(f32)
    return [X, Y, W1, rng.standard_normal(hid).astype(f32), W2, rng.standard_normal(c).astype(f32)]


def check(outs, refs, rtol=1e-4, atol=1e-5):
    assert len(outs) == len(refs)
    for out, ref in zip(outs, refs):
        np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol)


@needs_blas
def test_mlp_step_is_replayed_with_new_data_at_each_call():
    f = mlp_step()
    rng = np.random.default_rng(0)
    kept = []
    for call in range(6):
        data = mlp_data(rng)
        outs = f(*data)
        check(outs, mlp_numpy(*data))
        kept.append((outs, mlp_numpy(*data)))
        if call >= 1:
            assert f.program.capture_failure is None
            assert len(plans(f)) == 1
    for outs, refs in kept:  # earlier results are never overwritten by later calls
        check(outs, refs)
    assert len({id(o) for outs, _ in kept for o in outs}) == 6 * 5


@needs_blas
def test_a_new_layout_is_recorded_on_its_own():
    f = mlp_step()
    rng = np.random.default_rng(1)
    for batch in (16, 7, 16, 7, 16, 7, 3):
        data = mlp_data(rng, batch=batch)
        check(f(*data), mlp_numpy(*data))
    assert len(plans(f)) == 2  # batch 3 was seen once only


@needs_blas
def test_transposed_and_strided_arguments():
    a, b, c = st.dmatrix("a"), st.dmatrix("b"), st.dvector("c")
    f = sympile.function([a, b, c], [st.exp(a @ b) * c, (a @ b).sum(axis=0)])
    rng = np.random.default_rng(2)
    for _ in range(4):
        A = rng.standard_normal((9, 6)).T  # Fortran order
        B = rng.standard_normal((18, 14))[::2, ::-2]  # negative and doubled strides: BLAS cannot read these
        C = rng.standard_normal(14)[::-2]
        check(f(A, B, C), [np.exp(A @ B) * C, (A @ B).sum(axis=0)], rtol=1e-12, atol=1e-12)
    assert f.program.capture_failure is not None  # B is copied by numpy's matmul: not replayed, still right


@needs_blas
def test_transposed_operands_are_read_in_place_by_gemm():
    a, b = st.dmatrix("a"), st.dmatrix("b")
    f = sympile.function([a, b], [st.tanh(a.T @ b) + 1.0, st.tanh(a @ b.T)])
    rng = np.random.default_rng(3)
    for _ in range(4):
        A, B = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
        check(f(A, B), [np.tanh(A.T @ B) + 1.0, np.tanh(A @ B.T)], rtol=1e-12, atol=1e-12)
    assert f.program.capture_failure is None and len(plans(f)) == 1


def test_values_computed_by_numpy_are_not_replayed():
    x = st.dvector("x")
    i = st.lscalar("i")
    f = sympile.function([x, i], st.exp(x[i:]) * 2.0)  # the slice's offset depends on the value of i
    rng = np.random.default_rng(4)
    for k in (1, 3, 5, 2):
        v = rng.standard_normal(8)
        np.testing.assert_allclose(f(v, np.int64(k)), np.exp(v[k:]) * 2.0)
    assert not plans(f)


@needs_blas
def test_kernel_error_in_a_replayed_call_names_the_node():
    x, y = st.lvector("x"), st.lvector("y")
    f = sympile.function([x, y], [x**y + 1, x * 2])
    ones = np.ones(4, np.int64)
    for _ in range(3):
        check(f(ones * 2, ones), [ones * 3, ones * 4])
    assert plans(f)
    with pytest.raises(GraphValueError, match="negative integer powers"):
        f(ones * 2, -ones)


@needs_blas
def test_many_threads_calling_one_replayed_function():
    f = mlp_step()
    rng = np.random.default_rng(5)
    datasets = [mlp_data(rng) for _ in range(8)]
    for data in datasets[:3]:
        f(*data)

    def work(data):
        for _ in range(20):
            check(f(*data), mlp_numpy(*data))

    assert not run_in_threads(work, [(d,) for d in datasets])


@needs_blas
def test_shared_updates_through_replay_match_a_numpy_loop():
    rng = np.random.default_rng(6)
    X, Y, W1, b1, W2, b2 = mlp_data(rng)
    params = [sympile.shared(v.copy(), name=n) for v, n in zip((W1, b1, W2, b2), ("W1", "b1", "W2", "b2"))]
    x, y = st.fmatrix("x"), st.fmatrix("y")
    h = st.tanh(x @ params[0] + params[1])
    loss = st.mean(-st.sum(y * st.log_softmax(h @ params[2] + params[3], axis=1), axis=1))
    grads = sympile.grad(loss, params)
    f = sympile.function([x, y], loss, updates=[(p, p - np.float32(0.1) * g) for p, g in zip(params, grads)])
    ref = [W1, b1, W2, b2]
    for _ in range(6):
        loss_ref, *ref = mlp_numpy(X, Y, *ref)
        np.testing.assert_allclose(f(X, Y), loss_ref, rtol=1e-4)
    check([p.get_value() for p in params], ref)
    assert plans(f)


def test_an_argument_passed_twice():
    x, y = st.dmatrix("x"), st.dmatrix("y")
    f = sympile.function([x, y], [st.exp(x) + y, x * y])
    v = np.random.default_rng(7).standard_normal((3, 4))
    for _ in range(4):
        check(f(v, v), [np.exp(v) + v, v * v], rtol=1e-12, atol=0)
    w = v + 1
    check(f(v, w), [np.exp(v) + w, v * w], rtol=1e-12, atol=0)


def test_kernels_split_across_threads_are_not_replayed(monkeypatch):
    monkeypatch.setenv("SYMPILE_NUM_THREADS", "2")
    x, y = st.dvector("x"), st.dvector("y")
    f = sympile.function([x, y], [st.exp(x) * y, x - y])
    n = (1 << 19) + 3
    rng = np.random.default_rng(8)
    for _ in range(3):
        a, b = rng.standard_normal(n), rng.standard_normal(n)
        check(f(a, b), [np.exp(a) * b, a - b], rtol=1e-12, atol=0)
    assert f.program.capture_failure == "a kernel split across threads"


def test_signature_refuses_what_replay_cannot_take():
    a = np.zeros(4)
    assert replay.signature([a, np.zeros((2, 3), np.float32)]) is not None
    assert replay.signature([a, 1.0]) is None
    assert replay.signature([np.zeros(0)]) is None
    misaligned = np.frombuffer(b"\0" * 33, np.uint8)[1:].view(np.float64)
    assert replay.signature([misaligned]) is None


def test_replay_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("SYMPILE_REPLAY", "0")
    x = st.dmatrix("x")
    f = sympile.function([x], [st.exp(x) + 1.0, st.sum(x, axis=0)])
    v = np.random.default_rng(9).standard_normal((3, 4))
    for _ in range(4):
        check(f(v), [np.exp(v) + 1.0, v.sum(axis=0)], rtol=1e-12, atol=1e-12)
    assert not f.program._replays


@pytest.mark.parametrize("order", ["C", "F"])
def test_outputs_that_are_views_of_new_buffers(order):
    x = st.dmatrix("x")
    y = st.exp(x)
    f = sympile.function([x], [y.T, y, st.exp(x.T) * 2.0, y])
    rng = np.random.default_rng(10)
    kept = []
    for _ in range(5):
        v = np.asarray(rng.standard_normal((3, 5)), order=order)
        outs = f(v)
        check(outs, [np.exp(v).T, np.exp(v), np.exp(v.T) * 2.0, np.exp(v)], rtol=1e-12, atol=0)
        assert not np.shares_memory(outs[1], outs[3])
        kept.append((outs, v))
    for outs, v in kept:
        check(outs, [np.exp(v).T, np.exp(v), np.exp(v.T) * 2.0, np.exp(v)], rtol=1e-12, atol=0)
    assert f.program.capture_failure is None and plans(f)


def test_large_intermediates_are_not_kept(monkeypatch):
    monkeypatch.setattr(replay, "MAX_KEPT_BYTES", 1000)
    x = st.dmatrix("x")
    f = sympile.function([x], st.sum(st.log_softmax(x, axis=1), axis=0))  # the log_softmax buffer is kept
    v = np.random.default_rng(11).standard_normal((20, 30))
    z = v - v.max(axis=1, keepdims=True)
    for _ in range(3):
        check([f(v)], [np.sum(z - np.log(np.exp(z).sum(axis=1, keepdims=True)), axis=0)], rtol=1e-12, atol=1e-12)
    assert not plans(f) and "MAX_KEPT_BYTES" in f.program.capture_failure
    monkeypatch.setattr(replay, "MAX_KEPT_BYTES", 32 << 20)
    g = sympile.function([x], st.sum(st.log_softmax(x, axis=1), axis=0))
    for _ in range(3):
        g(v)
    assert plans(g)


def test_outputs_that_are_not_new_buffers_keep_the_step_by_step_path():
    x = st.dvector("x")
    f = sympile.function([x], [x, st.exp(x), st.constant(np.arange(3.0)) * 1.0])
    rng = np.random.default_rng(12)
    for _ in range(4):
        v = rng.standard_normal(3)
        outs = f(v)
        check(outs, [v, np.exp(v), np.arange(3.0)], rtol=1e-12, atol=0)
        assert not np.shares_memory(outs[0], v)
    assert not plans(f) and f.program.capture_failure is not None


@needs_blas
def test_dot_of_two_matrices_is_replayed_like_matmul():
    x, w = st.fmatrix("x"), st.fmatrix("w")
    b = st.fvector("b")
    f = sympile.function([x, w, b], [st.argmax(st.dot(x, w) + b, axis=1), st.tanh(st.dot(x, w.T.T))])
    rng = np.random.default_rng(13)
    for _ in range(4):
        X, W, B = (rng.standard_normal(s).astype(np.float32) for s in ((7, 5), (5, 3), (3,)))
        got = f(X, W, B)
        np.testing.assert_array_equal(got[0], np.argmax(X @ W + B, axis=1))
        np.testing.assert_allclose(got[1], np.tanh(X @ W), rtol=1e-5, atol=1e-6)
    assert f.program.capture_failure is None and plans(f)
