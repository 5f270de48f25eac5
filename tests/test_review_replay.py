"""Review of captured calls (runtime/replay.py), the gemm update (_CopyStep/_GemmUpdateStep) and the shape memo
in runtime/cpu_backend.py: each function is called at least 5 times with new data (the 2nd call with a layout is
recorded, later ones replayed) and compared with the same graph compiled for the numpy backend; results of
earlier calls are checked again at the end, so a replay that wrote into a returned buffer would show."""

import threading

import numpy as np
import pytest
from oracle import run_in_threads

import sympile
import sympile.tensor as st
from sympile.compiler.errors import GraphValueError
from sympile.compiler.fusion import fuse
from sympile.compiler.graph import constant_node, input_node, make_node
from sympile.runtime import replay
from sympile.runtime.blas import gemm_address
from sympile.runtime.cpu_backend import CpuProgram, _CopyStep, _GemmUpdateStep

needs_blas = pytest.mark.skipif(gemm_address("float32") is None, reason="numpy has no OpenBLAS with 64-bit sizes")


def plans(program) -> list:
    return [p for p in program._replays.values() if type(p) is replay.Plan]


def as_list(out) -> list:
    return out if isinstance(out, list) else [out]


def compare(ins, outs, make_args, calls=5, tol=1e-9, **kwargs):
    """Call the CPU function and the numpy-backend one ``calls`` times with ``make_args(call)``; returns the CPU
    function. Every result (values, dtype, shape) must match, also after all calls."""
    f = sympile.function(ins, outs, **kwargs)
    g = sympile.function(ins, outs, backend="numpy", **kwargs)
    kept = []
    for call in range(calls):
        args = make_args(call)
        got = as_list(f(*args))
        want = as_list(g(*[a.copy() if isinstance(a, np.ndarray) else a for a in args]))
        for a, b in zip(got, want, strict=True):
            a, b = np.asarray(a), np.asarray(b)
            assert a.shape == b.shape and a.dtype == b.dtype, call
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=f"call {call}")
        kept.append(([np.array(a, copy=True) for a in got], got))
    for snapshot, got in kept:  # no later call wrote into an earlier call's results
        for a, b in zip(snapshot, got):
            np.testing.assert_array_equal(a, b)
    return f


def readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


RNG = np.random.default_rng(20261125)
x, y = st.dmatrix("x"), st.dmatrix("y")
v = st.dvector("v")
s = st.dscalar("s")
n = st.lscalar("n")
SHAPES = [(3, 4), (5, 2)] * 4  # alternating layouts: each is recorded at its 2nd call, the memo flips each call

LAYOUT_CASES = {
    # name: (inputs, outputs, args(call), replayed?)
    "fortran": ([x, y], [st.exp(x) + y, st.sum(x * y, axis=1)],
                lambda c: [np.asfortranarray(RNG.standard_normal((3, 4))) for _ in "xy"], True),
    "negative_strides": ([x, y], [st.exp(x) + y, st.max(x, axis=0)],
                         lambda c: [RNG.standard_normal((6, 4))[::-2, ::-1], RNG.standard_normal((3, 4))], True),
    "stride_zero": ([x, y], [st.exp(x) + y, st.sum(x, axis=0)],
                    lambda c: [np.broadcast_to(RNG.standard_normal(4), (3, 4)), RNG.standard_normal((3, 4))], True),
    "readonly": ([x, y], [st.exp(x) + y, x * y], lambda c: [readonly(RNG.standard_normal((3, 4))),
                                                            RNG.standard_normal((3, 4))], True),
    # (Function converts a byte-swapped argument to native order: the converted call is replayed)
    "byteswapped": ([x, y], [st.exp(x) + y, x * y],
                    lambda c: [RNG.standard_normal((3, 4)).astype(">f8"), RNG.standard_normal((3, 4))], True),
    "zero_d_and_size_1": ([s, v], [s * 2.0 + 1.0, st.exp(s) + v, st.sum(v)],
                          lambda c: [np.array(RNG.standard_normal()), RNG.standard_normal(1)], True),
    "size_1_matrix": ([x], [st.exp(x).T * 2.0, st.sum(x, axis=1, keepdims=True)],
                      lambda c: [RNG.standard_normal((1, 1))], True),
    "scalar_coefficient": ([x, s], [st.exp(x) * s + 1.0, st.sum(x, axis=0) * s],
                           lambda c: [RNG.standard_normal((3, 4)), np.float64(c + 0.5)], True),
    "overlapping_views": ([v, w_ := st.dvector("w")], [st.exp(v) * w_, v * 3.0 - w_],
                          lambda c: (lambda b: [b[:6], b[3:9]])(RNG.standard_normal(10)), True),
    "same_array_twice_after_capture": (
        [x, y], [st.exp(x) + y, x * y],
        lambda c: (lambda a: [a, a] if c >= 2 else [a, RNG.standard_normal((3, 4))])(RNG.standard_normal((3, 4))),
        True),
    "reshape_to_data_shape": ([v, n], [st.reshape(st.exp(v), (n, -1)) * 2.0, st.sum(v)],
                              lambda c: [RNG.standard_normal(12), np.int64([2, 3, 4, 6, 12][c])], False),
    "alloc_of_data": ([v, s], [st.alloc(s, 3, 4) + st.exp(v), v * 2.0],
                      lambda c: [RNG.standard_normal(4), np.float64(c)], False),
    "getitem_tensor_index": ([v, st.lvector("i")], [st.exp(v)[st.lvector("i")] * 2.0, v + 1.0], None, False),
    "fills_of_alternating_shapes": (
        [x], [st.exp(x) * st.ones_like(x) / st.cast(x.shape[0] * x.shape[1], "float64") + st.zeros((x.shape[0], 1)),
              st.sum(x, axis=1) + st.cast(x.shape[1], "float64")],
        lambda c: [RNG.standard_normal(SHAPES[c])], True),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(LAYOUT_CASES))
def test_layouts_and_value_dependent_steps_match_numpy(case):
    ins, outs, make, replayed = LAYOUT_CASES[case]
    if make is None:  # (the index input must be the very variable the output reads)
        i = st.lvector("i")
        ins, outs = [v, i], [st.exp(v)[i] * 2.0, v + 1.0]

        def make(c):
            return [RNG.standard_normal(5), RNG.integers(0, 5, 3)]

    f = compare(ins, outs, make, calls=8 if "alternating" in case else 5)
    assert bool(plans(f.program)) == replayed, f.program.capture_failure


def test_float16_and_integer_kernels_with_division_by_zero():
    h = st.vector("h", dtype="float16")
    f = compare([h], [st.exp(h) + h, st.sum(h)], lambda c: [RNG.standard_normal(7).astype(np.float16)], tol=1e-2)
    assert plans(f.program)
    i, j = st.lvector("i"), st.lvector("j")
    f = compare([i, j], [i // j, i % j, i * j + 3, st.sum(i)],
                lambda c: [RNG.integers(-5, 5, 6), RNG.integers(-1, 2, 6)])  # fmt: skip
    assert plans(f.program)


def test_gradient_of_alternating_shapes_with_memo_fills():
    a = st.dmatrix("a")
    loss = st.sum(st.tanh(a) * 2.0)
    f = compare([a], [sympile.grad(loss, a), loss], lambda c: [RNG.standard_normal(SHAPES[c])], calls=8)
    assert len(plans(f.program)) == 2


def test_errors_in_the_recorded_and_the_replayed_calls_leave_later_calls_right():
    i, j = st.lvector("i"), st.lvector("j")
    f = sympile.function([i, j], [st.sum(i**j + 1), (i**j) * 2 + i])
    # the 2nd call (the one recorded) fails, then the 3rd is recorded; later failures are replayed ones
    for fails in [False, True, False, False, True, False, True, False, False]:
        a, b = RNG.integers(1, 4, 5), RNG.integers(0, 3, 5)
        if fails:
            b[2] = -1
            with pytest.raises(GraphValueError, match="negative integer powers"):
                f(a, b)
            continue
        got = f(a, b)
        np.testing.assert_array_equal(got[0], np.sum(a**b + 1))
        np.testing.assert_array_equal(got[1], a**b * 2 + a)
    assert plans(f.program)


@needs_blas
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gemm_updates_with_the_weight_returned_read_twice_or_kept(dtype):
    a, w, g = (st.matrix(name, dtype=dtype) for name in "awg")
    h = st.tanh(a @ w)
    u = w - 0.1 * (a.T @ g)
    outs = [h, u, w, 0.9 * w - np.float32(0.5) * (a.T @ st.exp(g)), st.sum(st.tanh(u) * 3.0, axis=1),
            w - 0.2 * (a.T @ (g * 2.0))]  # fmt: skip

    def make(c):
        return [RNG.standard_normal(shape).astype(dtype) for shape in ((6, 5), (5, 4), (6, 4))]

    f = compare([a, w, g], outs, make, tol=1e-4 if dtype == "float32" else 1e-10)
    assert any(type(step) is _GemmUpdateStep for _, step, _ in f.program._plan)
    # without returning w (an argument) the call is replayed, the kept update buffer included
    f = compare([a, w, g], [h, st.sum(st.tanh(u) * 3.0, axis=1), st.tanh(u).T * 2.0], make,
                tol=1e-4 if dtype == "float32" else 1e-10)  # fmt: skip
    assert plans(f.program) and f.program.capture_failure is None


@needs_blas
def test_shared_updates_reading_each_other_with_gemm_and_givens():
    W = sympile.shared(RNG.standard_normal((4, 3)).astype(np.float32), name="W")
    V = sympile.shared(RNG.standard_normal((4, 3)).astype(np.float32), name="V")
    acc = sympile.shared(np.float32(0), name="acc")
    xi = st.fmatrix("xi")
    scale = st.fscalar("scale")
    h = st.tanh(xi @ W)
    new_w = W - 0.1 * (xi.T @ h)
    new_v = V + 0.5 * W - 0.2 * (xi.T @ (h * scale))  # reads W, which is updated too
    f = sympile.function([xi], [st.sum(h), new_w], givens=[(scale, st.sum(V) * 0 + 2.0)],
                         updates=[(W, new_w), (V, new_v), (acc, acc + st.sum(V))])  # fmt: skip
    assert any(type(step) is _GemmUpdateStep for _, step, _ in f.program._plan)
    w0, v0, a0 = W.get_value().copy(), V.get_value().copy(), np.float32(acc.get_value())
    f32 = np.float32
    for _ in range(6):
        xv = RNG.standard_normal((5, 4)).astype(np.float32)
        total, returned = f(xv)
        hv = np.tanh(xv @ w0)
        w1 = w0 - f32(0.1) * (xv.T @ hv)
        v1 = v0 + f32(0.5) * w0 - f32(0.2) * (xv.T @ (hv * 2))
        a0 = a0 + v0.sum()
        np.testing.assert_allclose(total, hv.sum(), rtol=1e-4)
        np.testing.assert_allclose(returned, w1, rtol=1e-4, atol=1e-5)
        assert not np.shares_memory(returned, W.get_value())
        w0, v0 = w1, v1
        np.testing.assert_allclose(W.get_value(), w0, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(V.get_value(), v0, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(acc.get_value(), a0, rtol=1e-4)
    assert plans(f.program)


@needs_blas
def test_threads_replaying_a_plan_with_kept_buffers():
    a, w, g = st.dmatrix("a"), st.dmatrix("w"), st.dmatrix("g")
    h = st.tanh(a @ w)
    u = w - 0.1 * (a.T @ (g * h))
    outs = [st.sum(h * 2.0, axis=0), st.sum(st.exp(u * 0.1), axis=1), st.softmax(h, axis=1)]
    f = sympile.function([a, w, g], outs)
    ref = sympile.function([a, w, g], outs, backend="numpy")
    datasets = [[RNG.standard_normal(shape) for shape in ((6, 5), (5, 4), (6, 4))] for _ in range(6)]
    for data in datasets[:3]:
        f(*data)
    assert plans(f.program)

    def work(data):
        want = ref(*data)
        for _ in range(100):
            for got, w_ in zip(f(*data), want):
                assert np.allclose(got, w_, rtol=1e-10, atol=1e-12)

    assert not run_in_threads(work, [(d,) for d in datasets])


def _update_through_sum_to(target: str):
    """``[exp(w), w - 0.1*sum_to(a @ b, t)]`` as a CpuProgram: the graph API's ``sum_to`` with a target ``t``
    that is an input (its value, not its layout, says what sum_to sums)."""
    a, b, w = (input_node("float64", (None, None), name=name) for name in "abw")
    t = input_node("int64", (2,), name="t") if target == "input" else constant_node(np.array([1, 5]))
    update = make_node(
        "sub",
        [w, make_node("mul", [constant_node(0.1, weak=True), make_node("sum_to", [make_node("matmul", [a, b]), t])])],
    )
    program = CpuProgram([a, b, w] + ([t] if target == "input" else []), fuse([make_node("exp", [w]), update]))
    assert [type(step) for _, step, _ in program._plan][1:] == [_CopyStep, _GemmUpdateStep]
    return program


@needs_blas
def test_gemm_update_through_sum_to_to_another_shape_takes_the_kernel():
    program = _update_through_sum_to("constant")
    for _ in range(5):
        a, b, w = RNG.standard_normal((4, 3)), RNG.standard_normal((3, 5)), RNG.standard_normal((4, 5))
        np.testing.assert_allclose(program.run([a, b, w], [])[1], w - 0.1 * (a @ b).sum(0, keepdims=True))


@needs_blas
def test_gemm_update_through_sum_to_with_a_target_from_data():
    program = _update_through_sum_to("input")
    for call in range(5):
        a, b, w = RNG.standard_normal((4, 3)), RNG.standard_normal((3, 5)), RNG.standard_normal((4, 5))
        target = np.array([4, 5]) if call < 3 else np.array([1, 5])  # same layout, another value
        p = a @ b if call < 3 else (a @ b).sum(0, keepdims=True)
        np.testing.assert_allclose(program.run([a, b, w, target], [])[1], w - 0.1 * p, err_msg=f"call {call}")


def test_fills_over_the_memo_limit_are_recomputed_and_kept_by_the_plan(monkeypatch):
    from sympile.runtime import cpu_backend  # noqa: PLC0415

    monkeypatch.setattr(cpu_backend, "MEMO_MAX_BYTES", 16)  # every fill is recomputed at each step-by-step call
    a = st.dmatrix("a")
    loss = st.sum(st.tanh(a) * 2.0)
    f = compare([a], [sympile.grad(loss, a) * st.ones_like(a), loss], lambda c: [RNG.standard_normal(SHAPES[c])],
                calls=8)  # fmt: skip
    assert len(plans(f.program)) == 2


def test_threads_making_the_first_calls_of_two_layouts_at_once():
    a, w = st.dmatrix("a"), st.dmatrix("w")
    outs = [st.sum(st.tanh(a @ w) * 2.0, axis=0), st.softmax(a @ w, axis=1), st.exp(a).T * 2.0]
    f = sympile.function([a, w], outs)
    ref = sympile.function([a, w], outs, backend="numpy")
    barrier = threading.Barrier(6)
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        shape = [(4, 3), (2, 3)][seed % 2]
        barrier.wait()  # several threads see each layout's first, recorded and replayed calls together
        for _ in range(30):
            av, wv = rng.standard_normal(shape), rng.standard_normal((3, 5))
            for got, want in zip(f(av, wv), ref(av, wv)):
                if not np.allclose(got, want, rtol=1e-10, atol=1e-12):
                    errors.append(1)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(plans(f.program)) == 2


@needs_blas
def test_gemm_update_keeps_a_coefficient_of_a_difference_as_numpy_rounds_it():
    a, b, w = st.dmatrix("a"), st.dmatrix("b"), st.dmatrix("w")
    f = sympile.function([a, b, w], [st.tanh(w), (w - a @ b) * 0.1])
    # 0.1 is not spread over the difference (it would round differently); a power of two may be
    assert not any(type(step) is _GemmUpdateStep for _, step, _ in f.program._plan)
    g = sympile.function([a, b, w], [st.tanh(w), (w - a @ b) * 0.5])
    assert any(type(step) is _GemmUpdateStep for _, step, _ in g.program._plan)
    av, bv, wv = np.array([[1 - 2.0**-52]]), np.array([[1.0]]), np.array([[1.0]])  # a @ b is exact
    for _ in range(3):
        np.testing.assert_allclose(f(av, bv, wv)[1], (wv - av @ bv) * 0.1, rtol=1e-6)  # 2.8e-17 vs 2.2e-17
        np.testing.assert_allclose(g(av, bv, wv)[1], (wv - av @ bv) * 0.5, rtol=1e-6)


@needs_blas
def test_nan_left_in_kept_buffers_does_not_leak_into_later_calls():
    a, b, w = st.dmatrix("a"), st.dmatrix("b"), st.dmatrix("w")
    u = w - 0.1 * (a.T @ b)  # gemm (beta 1) into a kept copy of w; tanh(a @ w) overwrites a kept product

    def make(c):
        av, bv, wv = RNG.standard_normal((6, 5)), RNG.standard_normal((6, 4)), RNG.standard_normal((5, 4))
        if c in (3, 5):  # replayed calls that leave nan in the kept buffers
            av[1, 1], wv[0, 0] = np.nan, np.nan
        return [av, bv, wv]

    outs = [st.sum(st.tanh(a @ w), axis=0), st.sum(u, axis=1), st.max(u, axis=0)]  # (u read twice: not fused)
    f = compare([a, b, w], outs, make, calls=8)
    assert plans(f.program) and any(type(step) is _GemmUpdateStep for _, step, _ in f.program._plan)
