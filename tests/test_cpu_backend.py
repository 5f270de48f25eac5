"""The LLVM CPU backend against the numpy backend: every elementwise op over every dtype, layouts, random graphs.

Integer and bool results must be equal; float results within 4 ulp (nan where numpy has nan, infinities and
signs of zero included). Many ops are compiled into one module per test to keep LLVM's compile time down.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

import sympile as sp
from sympile.compiler.graph import constant_node, input_node, make_node, toposort
from sympile.compiler.ops.elementwise import ELEMWISE, LOWER
from sympile.variable import wrap

DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
]
#: ops checked with data where numpy's own result is defined (trig beyond 2**30 loses accuracy by design)
MAX_ULP = 4


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Units in the last place between float arrays of one dtype (0 for equal values, incl. both nan)."""
    bits = {2: np.int16, 4: np.int32, 8: np.int64}[a.itemsize]
    ia, ib = a.view(bits).astype(np.int64), b.view(bits).astype(np.int64)
    # map the sign-magnitude float order onto integers so adjacent floats differ by 1
    top = np.int64(np.iinfo(bits).min)
    ia = np.where(ia < 0, top - ia, ia)
    ib = np.where(ib < 0, top - ib, ib)
    dist = np.abs(ia - ib)
    both_nan = np.isnan(a) & np.isnan(b)
    return np.where(both_nan, 0, np.where(np.isnan(a) | np.isnan(b), np.iinfo(np.int64).max, dist))


def assert_matches(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if got.dtype.kind == "f":
        dist = ulp_distance(np.ascontiguousarray(got), np.ascontiguousarray(want))
        bad = dist > MAX_ULP
        assert not bad.any(), f"{what}: got {got[bad][:5]} want {want[bad][:5]} ({int(dist.max())} ulp)"
    else:
        assert np.array_equal(got, want), f"{what}: got {got.ravel()[:8]} want {want.ravel()[:8]}"


def assert_close(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    """For compositions, where cancellation turns a 1-ulp difference in a step into many ulps of the result."""
    assert got.dtype == want.dtype and got.shape == want.shape, what
    rtol = 1e-5 if got.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, equal_nan=True, err_msg=what)


def data(dtype: str, n: int, seed: int) -> np.ndarray:
    """Edge values of ``dtype`` then random ones."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.integers(0, 2, n).astype(bool)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        edges = np.array([info.min, info.min + 1, -1 if dt.kind == "i" else 5, 0, 1, 2, 3, info.max], dtype=dt)
        lo, hi = max(int(info.min), -100), min(int(info.max), 100)
        return np.concatenate([edges, rng.integers(lo, hi, n - len(edges), dtype=dt)])
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 1e-310, 3.0, 1e30, -1e30]
    vals = np.concatenate([special, rng.uniform(-20, 20, n - len(special))])
    return vals.astype(dt)


def _build(arity: int, dtypes: list[str]):
    """Build every op of ``arity``; ops numpy rejects for these dtypes (``-bool``, ``~float``) are left out.

    pow reads its own exponent input (the last one), kept >= 0 for integers: numpy raises for negative ones.
    """
    ins = [input_node(d, (None,), name=f"x{k}") for k, d in enumerate(dtypes)] + [input_node(dtypes[-1], (None,))]
    outs, names = [], []
    for name, (_, n) in ELEMWISE.items():
        if n != arity:
            continue
        try:
            outs.append(make_node(name, [ins[0], ins[-1]] if name == "pow" else ins[:arity]))
        except (TypeError, ValueError, OverflowError):
            continue
        names.append(name)
    return ins, outs, names


@functools.cache
def run_all(dtypes: tuple, seed: int = 0) -> dict:
    """{op: (cpu result, numpy result)} for every op of arity len(dtypes), compiled into one module."""
    arity = len(dtypes)
    ins, outs, names = _build(arity, list(dtypes))
    args = [data(d, 40, seed + k) for k, d in enumerate(dtypes)]
    exponent = data(dtypes[-1], 40, seed + 7)
    if np.dtype(dtypes[-1]).kind in "iu":
        exponent = np.where(exponent < 0, 0, exponent) % 7
    args.append(exponent)
    variables = [wrap(i) for i in ins]
    results = {}
    for backend in ("cpu", "numpy"):
        f = sp.function(variables, [wrap(o) for o in outs], backend=backend, optimize=False, on_unused_input="ignore")
        results[backend] = f(*args)
    out = {n: (c, p) for n, c, p in zip(names, results["cpu"], results["numpy"])}
    # the math library reduces trig arguments accurately up to 2**30 only (by design; numpy goes further)
    inside = np.abs(args[0].astype(np.float64)) <= 2.0**30
    for name in {"sin", "cos", "tan"} & set(out):
        out[name] = tuple(r[inside] for r in out[name])
    return out


def test_every_op_has_a_lowering():
    assert set(ELEMWISE) | {"cast"} <= set(LOWER)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arity", [1, 2])
def test_ops(dtype, arity):
    results = run_all((dtype,) * arity)
    assert len(results) >= 5
    for name, (got, want) in results.items():
        assert_matches(got, want, f"{name}({dtype})")


@pytest.mark.parametrize("pair", [("int8", "float32"), ("int64", "uint64"), ("uint8", "int16"), ("bool", "int32"),
                                  ("float16", "float32"), ("uint32", "int64"), ("int32", "float64")])  # fmt: skip
def test_mixed_dtypes(pair):
    for name, (got, want) in run_all(pair).items():
        assert_matches(got, want, f"{name}{pair}")


def test_ternary_ops():
    x, lo, hi = (input_node("float64", (None,)) for _ in range(3))
    c = input_node("bool", (None,))
    i, j = input_node("int16", (None,)), input_node("int16", (None,))
    outs = [make_node("clip", [x, lo, hi]), make_node("where", [c, x, i]), make_node("clip", [i, j, i])]
    ins = [x, lo, hi, c, i, j]
    args = [data("float64", 30, 1), data("float64", 30, 2), data("float64", 30, 3) + 5, data("bool", 30, 4),
            data("int16", 30, 5), data("int16", 30, 6)]  # fmt: skip
    got, want = (
        sp.function([wrap(v) for v in ins], [wrap(o) for o in outs], backend=b)(*args) for b in ("cpu", "numpy")
    )
    for g, w in zip(got, want):
        assert_matches(g, w, "ternary")


def test_weak_scalars_and_casts():
    x = input_node("int8", (None,))
    y = input_node("float32", (None,))
    outs = [
        make_node("add", [x, constant_node(3, weak=True)]),
        make_node("mul", [y, constant_node(0.1, weak=True)]),
        make_node("true_div", [x, constant_node(2, weak=True)]),
        make_node("lt", [x, constant_node(2.5, weak=True)]),
    ]
    for dtype in ["bool", "int8", "uint8", "int16", "uint16", "int32", "int64", "uint64", "float16", "float32"]:
        outs.append(make_node("cast", [y], dtype=dtype))
        outs.append(make_node("cast", [x], dtype=dtype))
    xv = data("int8", 30, 0)
    yv = np.concatenate(
        [np.array([0.0, -0.0, 1.5, -1.5, 2.5, -2.7, 127.9, -128.9, 255.5, 1e5, 7e4]), data("float32", 20, 1)]
    )
    yv = yv[np.isfinite(yv) & (np.abs(yv) < 1e9)].astype(np.float32)[:30]
    xv = xv[: len(yv)]
    args = [xv, yv]
    fns = [sp.function([wrap(x), wrap(y)], [wrap(o) for o in outs], backend=b) for b in ("cpu", "numpy")]
    for g, w in zip(*(f(*args) for f in fns)):
        assert_matches(g, w, "cast")


def test_integer_division_by_zero_never_traps():
    for dtype in ["int8", "int32", "int64", "uint8", "uint64"]:
        info = np.iinfo(dtype)
        a = np.array([7, -7 if info.min else 9, 0, info.min, info.min, info.max, 5], dtype=dtype)
        b = np.array([0, 0, 0, 0, -1 if info.min else 1, -1 if info.min else 3, 3], dtype=dtype)
        x, y = input_node(dtype, (None,)), input_node(dtype, (None,))
        outs = [make_node(op, [x, y]) for op in ("floor_div", "mod")]
        fns = [sp.function([wrap(x), wrap(y)], [wrap(o) for o in outs], backend=be) for be in ("cpu", "numpy")]
        for g, w in zip(*(f(a, b) for f in fns)):
            assert_matches(g, w, f"divide {dtype}")


def test_negative_integer_power_raises_like_numpy():
    x, y = input_node("int32", (None,)), input_node("int32", (None,))
    f = sp.function([wrap(x), wrap(y)], wrap(make_node("pow", [x, y])), backend="cpu")
    assert f(np.array([2, 3], np.int32), np.array([3, 2], np.int32)).tolist() == [8, 9]
    with pytest.raises(ValueError, match="negative integer powers"):
        f(np.array([2, 3], np.int32), np.array([-1, 2], np.int32))


def _w1(x, y, z):
    half = constant_node(2, weak=True)
    sq = make_node("true_div", [make_node("mul", [make_node("neg", [x]), x]), half])
    return make_node("add", [make_node("mul", [make_node("exp", [sq]), make_node("sin", [y])]),
                             make_node("log1p", [make_node("mul", [z, z])])])  # fmt: skip


@pytest.mark.parametrize("optimize", [False, True])
def test_layouts_strided_transposed_negative_broadcast(optimize):
    x, y, z = input_node("float64", (None, None)), input_node("float64", (None, 1)), input_node("float64", (None,))
    out = _w1(x, y, z)
    fns = [sp.function([wrap(x), wrap(y), wrap(z)], wrap(out), backend=b, optimize=optimize) for b in ("cpu", "numpy")]
    rng = np.random.default_rng(0)
    base = rng.standard_normal((9, 14))
    cases = [
        (base[:, :7], rng.standard_normal((9, 1)), rng.standard_normal(7)),  # contiguous rows? no: sliced
        (base.T[::-1, ::2], rng.standard_normal((14, 1))[::-1], rng.standard_normal(5)),  # transposed, negative
        (base[::-2, ::-3], rng.standard_normal((1, 1)), rng.standard_normal(1)),  # broadcast from size 1
        (np.asfortranarray(base), rng.standard_normal((9, 1)), rng.standard_normal(14)),
        (base, rng.standard_normal((9, 1)), rng.standard_normal(14)),
        (base[:0], rng.standard_normal((0, 1)), rng.standard_normal(14)),  # empty
    ]
    for args in cases:
        assert_close(fns[0](*args), fns[1](*args), f"layout {[a.strides for a in args]}")


def test_fortran_inputs_take_the_contiguous_loop_and_give_fortran_output():
    x, y = input_node("float32", (None, None)), input_node("float32", (None, None))
    out = make_node("mul", [make_node("sin", [x]), y])
    f = sp.function([wrap(x), wrap(y)], wrap(out), backend="cpu")
    a, b = (np.asfortranarray(np.random.default_rng(k).standard_normal((5, 7)), dtype=np.float32) for k in range(2))
    got = f(a, b)
    assert got.flags.f_contiguous
    assert_matches(got, np.sin(a) * b)
    assert_matches(f(a, np.ascontiguousarray(b)), np.sin(a) * b)  # mixed layouts: the strided loop


def test_large_kernel_splits_across_threads(monkeypatch):
    monkeypatch.setenv("SYMPILE_NUM_THREADS", "3")
    x, y, z = (input_node("float32", (None,)) for _ in range(3))
    x2, y2, z2 = (input_node("float32", (None, None)) for _ in range(3))
    fns = [sp.function([wrap(v) for v in (x, y, z)], wrap(_w1(x, y, z)), backend=b) for b in ("cpu", "numpy")]
    args = [np.random.default_rng(k).standard_normal(200_001).astype(np.float32) for k in range(3)]
    assert_close(fns[0](*args), fns[1](*args), "threads")
    xs = [a[::-1] for a in args]  # the strided path: one long row with a negative stride
    assert_close(fns[0](*xs), fns[1](*xs), "threads strided")
    ys = [a[:200_000].reshape(400, 500).T for a in args]  # the strided path over rows
    fns = [sp.function([wrap(v) for v in (x2, y2, z2)], wrap(_w1(x2, y2, z2)), backend=b) for b in ("cpu", "numpy")]
    assert_close(fns[0](*ys), fns[1](*ys), "threads rows")


def test_fallback_nodes_are_listed_and_run():
    x = input_node("float64", (None, None))
    out = make_node("exp", [make_node("dimshuffle", [make_node("sin", [x])], new_order=(1, 0))])
    f = sp.function([wrap(x)], wrap(out), backend="cpu", optimize=False)
    assert [n.op for n in f.program.fallback_nodes] == ["dimshuffle"]
    assert len(f.program.kernels) == 2 and "define" in f.program.kernels[0].llvm_ir
    a = np.random.default_rng(0).standard_normal((3, 4))
    assert_matches(f(a), np.exp(np.sin(a).T))


# --- random graphs ---------------------------------------------------------------------------------------------
_UNARY = ["neg", "abs", "exp", "sin", "tanh", "sqr", "sqrt", "log1p", "floor", "sign", "sigmoid", "sum", "max"]
_BINARY = ["add", "sub", "mul", "true_div", "maximum", "minimum", "lt", "pow", "arctan2", "mod"]
_REDUCE_ATTRS = {"axis": None, "keepdims": True}  # full reductions that keep the rank (so they broadcast)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hs.data())
def test_random_graphs(draw):
    dtype = draw.draw(hs.sampled_from(["float32", "float64", "int32"]))
    leaves = [input_node(dtype, (None,)), input_node(dtype, (None,))]
    nodes = list(leaves)
    for _ in range(draw.draw(hs.integers(1, 8))):
        if draw.draw(hs.booleans()):
            op, args = draw.draw(hs.sampled_from(_UNARY)), [draw.draw(hs.sampled_from(nodes))]
        else:
            op, args = draw.draw(hs.sampled_from(_BINARY)), [draw.draw(hs.sampled_from(nodes)) for _ in range(2)]
        if op == "pow" and nodes[0].dtype == "int32":
            continue  # negative exponents raise in numpy
        try:
            nodes.append(make_node(op, args, **(_REDUCE_ATTRS if op in ("sum", "max") else {})))
        except (TypeError, ValueError):
            continue
    outs = nodes[2:] or [make_node("add", leaves)]
    rng = np.random.default_rng(draw.draw(hs.integers(0, 2**16)))
    layout = draw.draw(hs.sampled_from([slice(None), slice(None, None, -1), slice(1, None, 3)]))
    args = [rng.uniform(-3, 3, 51).astype(dtype)[layout] for _ in leaves]  # contiguous, reversed or strided
    optimize = draw.draw(hs.booleans())
    fns = [sp.function([wrap(v) for v in leaves], [wrap(o) for o in outs], backend=b, optimize=optimize,
                       on_unused_input="ignore") for b in ("cpu", "numpy")]  # fmt: skip
    got, want = (f(*args) for f in fns)
    values = {id(n): np.asarray(v) for n, v in zip([*leaves, *outs], [*args, *want])}
    for out, g, w in zip(outs, got, want):
        if g.dtype.kind == "f":
            # compositions amplify a few-ulp difference: a mod of a sum (or a difference of two) is exact only to
            # the ulp of the sum. Compare relative to the values' scale and to the largest value it was made from
            eps = 1e-5 if g.dtype == np.float32 else 1e-11
            made_from = [values[id(n)] for n in toposort([out]) if id(n) in values and values[id(n)].dtype.kind == "f"]
            scale = max((float(np.abs(v[np.isfinite(v)]).max(initial=0)) for v in made_from), default=0.0)
            rtol = 1e-4 if g.dtype == np.float32 else 1e-9
            np.testing.assert_allclose(g, w, rtol=rtol, atol=max(1e-6, eps * scale), equal_nan=True)
        else:
            np.testing.assert_array_equal(g, w)


# --- reductions ------------------------------------------------------------------------------------------------
REDUCTIONS = ["sum", "prod", "max", "min", "mean", "all", "any", "argmax", "argmin"]


@pytest.mark.parametrize("dtype", ["bool", "int8", "int32", "uint8", "int64", "float16", "float32", "float64"])
def test_reductions_over_axes(dtype):
    x = input_node(dtype, (None, None, None))
    outs = []
    for r in REDUCTIONS:
        for axis in [None, 0, 1, 2, (0, 2), (1, 2)]:
            for keepdims in [False, True]:
                try:
                    outs.append(make_node(r, [x], axis=axis, keepdims=keepdims))
                except (TypeError, ValueError):
                    continue
    fc, fn = (sp.function([wrap(x)], [wrap(o) for o in outs], backend=b, optimize=False) for b in ("cpu", "numpy"))
    assert not fc.program.fallback_nodes
    rng = np.random.default_rng(0)
    cases = [rng.uniform(-2, 2, (3, 4, 5)), rng.uniform(-2, 2, (6, 4, 5))[::-2, :, ::-1].transpose(2, 1, 0),
             rng.uniform(-1.5, 1.5, (2, 300, 3)), rng.uniform(-2, 2, (1, 1, 1))]  # fmt: skip
    rtol = {"float16": 1e-2, "float32": 1e-5}.get(dtype, 1e-12)
    for a in cases:
        a = a.astype(dtype)
        for o, g, w in zip(outs, fc(a), fn(a)):
            what = f"{o.op}{o.attrs} of {dtype}{a.shape}"
            assert g.dtype == w.dtype and g.shape == w.shape, what
            if g.dtype.kind == "f":
                np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol, equal_nan=True, err_msg=what)
            else:
                np.testing.assert_array_equal(g, w, err_msg=what)


def test_reductions_of_empty_and_nan():
    x = input_node("float64", (None, None))
    outs = [make_node(r, [x], axis=1, keepdims=False) for r in REDUCTIONS]
    fc, fn = (sp.function([wrap(x)], [wrap(o) for o in outs], backend=b) for b in ("cpu", "numpy"))
    a = np.array([[1.0, np.nan, 3.0], [np.inf, 1.0, 2.0], [-np.inf, np.inf, 0.0], [0.0, -1.0, 2.0]])
    for o, g, w in zip(outs, fc(a), fn(a)):
        np.testing.assert_array_equal(g, w, err_msg=o.op)
    empty = np.zeros((2, 0))
    with pytest.raises(ValueError):
        fc(empty)  # max of nothing: numpy raises
    sums = [make_node(r, [x], axis=1, keepdims=False) for r in ("sum", "prod", "all", "any", "mean")]
    fc, fn = (sp.function([wrap(x)], [wrap(o) for o in sums], backend=b) for b in ("cpu", "numpy"))
    for o, g, w in zip(sums, fc(empty), fn(empty)):
        np.testing.assert_array_equal(g, w, err_msg=o.op)


def test_fused_reductions_and_their_accuracy(monkeypatch):
    x, y = input_node("float64", (None,)), input_node("float64", (None, None))
    outs = [make_node("sum", [make_node("mul", [make_node("exp", [x]), x])], axis=None, keepdims=False),
            make_node("max", [make_node("sin", [y])], axis=0, keepdims=True),
            make_node("mean", [make_node("sqr", [y])], axis=(0, 1), keepdims=False)]  # fmt: skip
    fc, fn = (sp.function([wrap(x), wrap(y)], [wrap(o) for o in outs], backend=b) for b in ("cpu", "numpy"))
    assert {n.op for n in fc.graph} == {"fused_reduce"} and not fc.program.fallback_nodes
    rng = np.random.default_rng(1)
    args = [rng.standard_normal(300_001), rng.standard_normal((30_001, 3))]
    for threads in ("1", "4"):  # 4 threads: few outputs over many elements split the reduced axis
        monkeypatch.setenv("SYMPILE_NUM_THREADS", threads)
        for g, w in zip(fc(*args), fn(*args)):
            np.testing.assert_allclose(g, w, rtol=1e-12)
    # float32 sum of many values: at least as accurate as numpy's pairwise summation
    z = input_node("float32", (None,))
    f32 = [
        sp.function([wrap(z)], wrap(make_node("sum", [z], axis=None, keepdims=False)), backend=b)
        for b in ("cpu", "numpy")
    ]
    v = (rng.uniform(0, 1, 1_000_003) + 1000).astype(np.float32)
    exact = float(np.sum(v.astype(np.float64)))
    err_cpu, err_numpy = (abs(float(f(v)) - exact) for f in f32)
    assert err_cpu <= max(err_numpy, exact * 2**-24)


def test_contiguous_loop_is_vectorized():
    x, y, z = (input_node("float64", (None,)) for _ in range(3))
    f = sp.function([wrap(v) for v in (x, y, z)], wrap(_w1(x, y, z)), backend="cpu")
    (kernel,) = f.program.kernels
    assert "x double>" in kernel.llvm_ir  # SIMD vectors of doubles in the optimized IR
    called = set(re.findall(r"call [^@]*@([\w.]+)", kernel.llvm_ir))
    # no libm call: all math inlined (the one other call is the shared contiguous loop, {kernel}_loop)
    assert all(name.startswith("llvm.") or name.endswith("_loop") for name in called), called


def test_kernel_of_constants_only():
    out = make_node("mul", [make_node("add", [constant_node(2.0), constant_node(3.0)]), constant_node(4.0)])
    f = sp.function([], wrap(out), backend="cpu", optimize=False)
    assert len(f.program.kernels) == 2 and float(f()) == 20.0


def test_one_function_called_from_many_threads():
    from concurrent.futures import ThreadPoolExecutor

    x, y = input_node("float64", (None, None)), input_node("float64", (None,))
    out = make_node("sum", [make_node("mul", [make_node("exp", [x]), y])], axis=1, keepdims=False)
    f = sp.function([wrap(x), wrap(y)], wrap(out), backend="cpu")
    rng = np.random.default_rng(3)
    cases = [(rng.standard_normal((50, 7 + k)), rng.standard_normal(7 + k)) for k in range(16)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda c: f(*c), cases * 4))
    for (a, b), got in zip(cases * 4, results):
        np.testing.assert_allclose(got, np.sum(np.exp(a) * b, axis=1), rtol=1e-12)
