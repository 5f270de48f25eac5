"""The numpy oracle for op tests: compile a sympile graph, run it, compare with numpy run directly.

A test writes its expression once as a function of a namespace ``m`` and arrays/variables, so the same code
runs with ``m = sympile.tensor`` on symbolic inputs and with ``m = numpy`` on the arrays themselves:

>>> import numpy as np
>>> check(lambda m, x: m.exp(x) + 1, np.arange(3.0))
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

import sympile as sp
import sympile.tensor as st

# dtype families every elementwise test runs over
INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8"]
FLOAT_DTYPES = ["float32", "float64"]
ALL_DTYPES = ["bool", *INT_DTYPES, *FLOAT_DTYPES]


def _float_of(x) -> np.dtype:
    """The float dtype numpy computes ``exp(x)`` in for ``x``'s dtype (int8 -> float16, int64 -> float64)."""
    return np.exp(np.ones((), dtype=np.asarray(x).dtype)).dtype


def _via_longdouble(fn):
    """A reference computed in extended precision, rounded to numpy's float result dtype."""

    def ref(x):
        x = np.asarray(x)
        return np.asarray(fn(x.astype(np.longdouble)), dtype=np.longdouble).astype(_float_of(x))

    return ref


def _erf_ref(fn):
    vec = np.frompyfunc(fn, 1, 1)
    return lambda x: np.asarray(vec(np.asarray(x).astype(np.float64)), dtype=np.float64).astype(_float_of(x))


class NumpyNamespace:
    """numpy under sympile.tensor's names, so one expression runs on both (``m.eq``, ``m.sqr``, ``m.switch``).

    Ops without a numpy function (sigmoid, softplus, erf, erfc) are computed in extended precision here.
    """

    eq, neq, lt, le, gt, ge = np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal
    and_, or_, xor = np.bitwise_and, np.bitwise_or, np.bitwise_xor
    sqr, neg, sub, mul = np.square, np.negative, np.subtract, np.multiply
    true_div, floor_div, mod = np.true_divide, np.floor_divide, np.remainder
    switch = staticmethod(np.where)
    sigmoid = staticmethod(_via_longdouble(lambda x: 1 / (1 + np.exp(-x))))
    softplus = staticmethod(_via_longdouble(lambda x: np.logaddexp(np.longdouble(0), x)))
    erf = staticmethod(_erf_ref(math.erf))
    erfc = staticmethod(_erf_ref(math.erfc))

    @staticmethod
    def cast(x, dtype):
        return np.asarray(x).astype(dtype)

    @staticmethod
    def logsumexp(x, axis=None, keepdims=False):
        x = np.asarray(x)
        xl = x.astype(np.longdouble)
        m = np.max(xl, axis=axis, keepdims=True) if x.size else np.zeros((1,) * x.ndim, np.longdouble)
        m = np.where(np.isfinite(m), m, 0)
        out = np.log(np.sum(np.exp(xl - m), axis=axis, keepdims=True)) + m
        out = out if keepdims else np.squeeze(out, axis=axis)
        return np.asarray(out).astype(_float_of(x))

    @staticmethod
    def softmax(x, axis=-1):
        x = np.asarray(x)
        xl = x.astype(np.longdouble)
        e = np.exp(xl - np.max(xl, axis=axis, keepdims=True))
        return (e / np.sum(e, axis=axis, keepdims=True)).astype(_float_of(x))

    @staticmethod
    def log_softmax(x, axis=-1):
        x = np.asarray(x)
        xl = x.astype(np.longdouble)
        shifted = xl - np.max(xl, axis=axis, keepdims=True)
        return (shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))).astype(_float_of(x))

    @staticmethod
    def relu(x):
        return np.maximum(x, 0)

    def __getattr__(self, name):
        return getattr(np, name)


NP = NumpyNamespace()


def symbolic_like(a: np.ndarray, name: str | None = None, static: bool = False) -> st.TensorVariable:
    """A symbolic input with ``a``'s dtype and rank (dimensions unknown unless ``static``)."""
    shape = a.shape if static else (None,) * a.ndim
    return st.tensor(dtype=a.dtype, shape=shape, name=name)


def run(build: Callable, *arrays: np.ndarray, optimize: bool = True, static: bool = False):
    """Build ``build(*symbolic inputs)``, compile with the numpy backend and call it on ``arrays``.

    Returns ``(symbolic output(s), result(s))``.
    """
    arrays = [np.asarray(a) for a in arrays]
    ins = [symbolic_like(a, f"in{i}", static) for i, a in enumerate(arrays)]
    out = build(*ins)
    f = sp.function(ins, out, backend="numpy", optimize=optimize, on_unused_input="ignore")
    return out, f(*arrays)


def assert_same(got, want, rtol: float = 0.0, atol: float = 0.0, what: str = "") -> None:
    """Same dtype, same shape, equal values (nan == nan; exact unless a tolerance is given)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"{what}dtype {got.dtype} != numpy's {want.dtype}"
    assert got.shape == want.shape, f"{what}shape {got.shape} != numpy's {want.shape}"
    if rtol == 0 and atol == 0:
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def assert_type_matches(var: st.TensorVariable, value: np.ndarray, what: str = "", exact: bool = False) -> None:
    """The static type (dtype, known dimensions) agrees with a computed value; ``exact``: every dim known."""
    assert var.dtype == value.dtype.name, f"{what}static dtype {var.dtype} != value's {value.dtype}"
    assert var.type.accepts_shape(value.shape), f"{what}static shape {var.static_shape} vs value {value.shape}"
    if exact:
        assert var.static_shape == value.shape, f"{what}static shape {var.static_shape} not fully inferred"


def check(
    expr: Callable,
    *arrays,
    rtol: float = 0.0,
    atol: float = 0.0,
    static: bool = False,
    optimize: tuple = (False, True),
) -> np.ndarray:
    """``expr(st, *symbolic)`` compiled and run equals ``expr(NP, *arrays)``: dtype, shape, values.

    Also checks the static type of the symbolic result against the value (with ``static``, the inputs' shapes
    are known at build time and the result's must be inferred in full). The graph is compiled once per entry of
    ``optimize`` (without and with the optimizer: both must match numpy). Returns the last sympile result.
    """
    arrays = [np.asarray(a) if not isinstance(a, np.ndarray) else a for a in arrays]
    with np.errstate(all="ignore"):
        want = expr(NP, *arrays)
    for opt in optimize:
        label = "optimized " if opt else ""
        out, got = run(lambda *xs: expr(st, *xs), *arrays, optimize=opt, static=static)
        outs, gots, wants = (out, got, want) if isinstance(want, (list, tuple)) else ([out], [got], [want])
        assert len(gots) == len(wants)
        for i, (o, g, w) in enumerate(zip(outs, gots, wants)):
            w = np.asarray(w)
            what = f"{label}output {i}: "
            assert_type_matches(o, w, what, exact=static)
            tol = OPTIMIZED_TOL.get(w.dtype.name, 0.0) if opt else 0.0
            assert_same(g, w, max(rtol, tol), max(atol, tol), what)
    return got


# Rewrites may compute a float result more accurately than the expression as written (exp(x) - 1 -> expm1(x)),
# so optimized results are compared within a small tolerance; integer and bool results stay exact.
OPTIMIZED_TOL = {"float16": 1e-2, "float32": 1e-5, "float64": 1e-12}


def sample(shape, dtype, seed: int = 0, low: float = -3.0, high: float = 3.0) -> np.ndarray:
    """Deterministic test data of a dtype: random bools, small ints (non-negative for unsigned), floats."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.random(shape) < 0.5
    if dt.kind == "u":
        return rng.integers(0, 6, size=shape).astype(dt)
    if dt.kind == "i":
        return rng.integers(-5, 6, size=shape).astype(dt)
    return rng.uniform(low, high, size=shape).astype(dt)


def layouts(a: np.ndarray) -> dict[str, np.ndarray]:
    """``a``'s values in several memory layouts (same shape): C, Fortran, strided, negative strides.

    The strided and reversed ones are views of bigger arrays, so the interpreter sees non-contiguous data.
    """
    big = np.zeros(tuple(2 * d for d in a.shape), dtype=a.dtype)
    view = big[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    rev = np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])
    rev = rev[tuple(slice(None, None, -1) for _ in a.shape)]
    return {"C": np.ascontiguousarray(a), "F": np.asfortranarray(a), "strided": view, "negative": rev}


def run_in_threads(work: Callable, argument_lists: list) -> list:
    """Run ``work(*args)`` on one thread per entry of ``argument_lists`` at once; the exceptions they raised."""
    import threading  # noqa: PLC0415

    errors: list = []

    def guarded(*args):
        try:
            work(*args)
        except Exception as e:  # noqa: BLE001  (returned to the caller)
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=args) for args in argument_lists]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
