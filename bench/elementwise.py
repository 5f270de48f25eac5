"""Elementwise workloads: W1 the fused expression, W2 a fused reduction, W6 per-call overhead, W7 STREAM triad.

Each ``wN(settings)`` yields Cases (one per size/dtype), built lazily so only one case's arrays are alive.
Compiled peer kernels are cached per dtype, so W6 reuses W1's (it measures calls, not compiles).

>>> cases = list(w1(Settings(quick=True)))
>>> [c.title for c in cases]
['f64 n=100000', 'f32 n=100000']
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import peers
from harness import BASELINE, Case, Impl, Settings
from sympile_impl import sympile_impl

W1_TEXT = "exp(-x*x/2)*sin(y) + log1p(z*z)"


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


# --- W1: exp(-x*x/2)*sin(y) + log1p(z*z) ------------------------------------------------------------------------
def w1_numpy(x, y, z):
    """The expression as a user writes it in numpy: five temporaries allocated per call."""
    return np.exp(-x * x / 2) * np.sin(y) + np.log1p(z * z)


def w1_numpy_out(x):
    """numpy at its fastest: two scratch buffers and the output preallocated, every ufunc with ``out=``."""
    t, u, out = np.empty_like(x), np.empty_like(x), np.empty_like(x)

    def run(x, y, z):
        np.multiply(x, x, out=t)
        np.multiply(t, -0.5, out=t)  # -x*x/2: scaling by a power of two is exact, so this is the same value
        np.exp(t, out=t)
        np.sin(y, out=u)
        np.multiply(t, u, out=t)
        np.multiply(z, z, out=u)
        np.log1p(u, out=u)
        return np.add(t, u, out=out)

    return run


@functools.cache
def _numba_w1():
    nb = peers.numba()

    @nb.njit(parallel=True, fastmath=False)
    def kernel(x, y, z, half, out):
        # ``half`` has x's dtype: a float literal would promote float32 math to float64.
        for i in nb.prange(x.size):
            out[i] = np.exp(-x[i] * x[i] * half) * np.sin(y[i]) + np.log1p(z[i] * z[i])
        return out

    return kernel


@functools.cache
def _pytensor_w1(dtype: str):
    pytensor = peers.pytensor()
    pt = pytensor.tensor
    x, y, z = (pt.vector(n, dtype=dtype) for n in "xyz")
    return pytensor.function([x, y, z], pt.exp(-x * x / 2) * pt.sin(y) + pt.log1p(z * z))


@functools.cache
def _jax_w1():
    jax = peers.jax()
    jnp = jax.numpy
    return jax.jit(lambda x, y, z: jnp.exp(-x * x / 2) * jnp.sin(y) + jnp.log1p(z * z))


def _sympile_w1_graph(dtype: str):
    import sympile.tensor as st

    x, y, z = (st.vector(n, dtype=dtype) for n in "xyz")
    return [x, y, z], st.exp(-x * x / 2) * st.sin(y) + st.log1p(z * z)


def w1_impls(settings: Settings, x, y, z) -> list[Impl]:
    """Every implementation of W1 on the arrays x, y, z (also W6's, on 1-element arrays)."""

    def numexpr():
        ne, out = peers.numexpr(), np.empty_like(x)
        names = {"x": x, "y": y, "z": z}
        return lambda: ne.evaluate(W1_TEXT, local_dict=names, out=out)

    def numba():
        kernel, out, half = _numba_w1(), np.empty_like(x), x.dtype.type(0.5)
        return lambda: kernel(x, y, z, half, out)

    def pytensor():
        f = _pytensor_w1(x.dtype.name)
        return lambda: f(x, y, z)

    def jax():
        jax = peers.jax()
        f, args = _jax_w1(), [jax.device_put(a) for a in (x, y, z)]
        return lambda: f(*args).block_until_ready()

    def numpy_out():
        run = w1_numpy_out(x)
        return lambda: run(x, y, z)

    return [
        Impl("numpy", lambda: lambda: w1_numpy(x, y, z)),
        Impl(BASELINE, numpy_out),
        Impl("numexpr", numexpr),
        Impl("numba", numba),
        Impl("pytensor", pytensor),
        Impl("jax", jax),
        sympile_impl(settings.backend, lambda: _sympile_w1_graph(x.dtype.name), [x, y, z]),
    ]


def w1(settings: Settings) -> Iterator[Case]:
    n = 100_000 if settings.quick else 10_000_000
    for dtype, tol in ((np.float64, (1e-7, 1e-12)), (np.float32, (1e-4, 1e-6))):
        rng = _rng()
        x, y, z = (rng.standard_normal(n).astype(dtype) * s for s in (1.0, 2.0, 3.0))
        yield Case("W1", f"{np.dtype(dtype).name[0]}{np.dtype(dtype).itemsize * 8} n={n}", w1_impls(settings, x, y, z),
                   expected=lambda x=x, y=y, z=z: w1_numpy(x, y, z), rtol=tol[0], atol=tol[1],
                   bytes_moved=4 * n * np.dtype(dtype).itemsize)  # fmt: skip
        del x, y, z


# --- W2: sum(exp(x)*y) ------------------------------------------------------------------------------------------
@functools.cache
def _numba_w2():
    nb = peers.numba()

    @nb.njit(parallel=True, fastmath=False)
    def kernel(x, y):
        s = 0.0
        for i in nb.prange(x.size):
            s += np.exp(x[i]) * y[i]
        return s

    return kernel


def w2(settings: Settings) -> Iterator[Case]:
    n = 100_000 if settings.quick else 10_000_000
    rng = _rng()
    x, y = rng.standard_normal(n), rng.standard_normal(n)

    def numpy_out():
        buf = np.empty_like(x)
        # The fastest numpy: exp into a reused buffer, then one BLAS dot for the multiply-and-sum.
        return lambda: np.dot(np.exp(x, out=buf), y)

    def numexpr():
        ne = peers.numexpr()
        return lambda: ne.evaluate("sum(exp(x)*y)", local_dict={"x": x, "y": y})

    def numba():
        kernel = _numba_w2()
        return lambda: kernel(x, y)

    def pytensor():
        pytensor = peers.pytensor()
        pt = pytensor.tensor
        a, b = pt.dvector("x"), pt.dvector("y")
        f = pytensor.function([a, b], pt.sum(pt.exp(a) * b))
        return lambda: f(x, y)

    def jax():
        jax = peers.jax()
        f = jax.jit(lambda a, b: jax.numpy.sum(jax.numpy.exp(a) * b))
        args = [jax.device_put(v) for v in (x, y)]
        return lambda: f(*args).block_until_ready()

    def graph():
        import sympile.tensor as st

        a, b = st.dvector("x"), st.dvector("y")
        return [a, b], st.sum(st.exp(a) * b)

    impls = [
        Impl("numpy", lambda: lambda: np.sum(np.exp(x) * y)),
        Impl(BASELINE, numpy_out),
        Impl("numexpr", numexpr),
        Impl("numba", numba),
        Impl("pytensor", pytensor),
        Impl("jax", jax),
        sympile_impl(settings.backend, graph, [x, y]),
    ]
    yield Case("W2", f"f64 n={n}", impls, expected=lambda: np.sum(np.exp(x) * y), rtol=1e-9,
               bytes_moved=2 * n * 8)  # fmt: skip


# --- W6: per-call overhead ----------------------------------------------------------------------------------------
def w6(settings: Settings) -> Iterator[Case]:
    x, y, z = (np.array([v]) for v in (0.5, 1.5, 2.5))
    yield Case("W6", "W1 on 1 element, f64", w1_impls(settings, x, y, z), expected=w1_numpy(x, y, z),
               rtol=1e-12, unit="us", inner=200 if settings.quick else 2000)  # fmt: skip


# --- W7: STREAM triad a = b + s*c ---------------------------------------------------------------------------------
@functools.cache
def _numba_triad():
    nb = peers.numba()

    @nb.njit(parallel=True, fastmath=False)
    def kernel(a, b, c, s):
        for i in nb.prange(a.size):
            a[i] = b[i] + s * c[i]
        return a

    return kernel


TRIAD_IMPLS = ("numpy out=", "numexpr", "numba")  # the peers whose best triad is the bandwidth limit


def w7(settings: Settings) -> Iterator[Case]:
    n = 2_000_000 if settings.quick else 20_000_000  # 480 MB in all: far beyond any cache
    rng = _rng()
    b, c, s = rng.standard_normal(n), rng.standard_normal(n), 3.0

    def numpy_out():
        a = np.empty_like(b)
        # Two passes over a (numpy has no fused multiply-add ufunc): the limit numpy itself can reach.
        return lambda: np.add(np.multiply(c, s, out=a), b, out=a)

    def numexpr():
        ne, a = peers.numexpr(), np.empty_like(b)
        return lambda: ne.evaluate("b + s*c", local_dict={"b": b, "c": c, "s": s}, out=a)

    def numba():
        kernel, a = _numba_triad(), np.empty_like(b)
        return lambda: kernel(a, b, c, s)

    def graph():
        import sympile.tensor as st

        bb, cc = st.dvector("b"), st.dvector("c")
        return [bb, cc], bb + s * cc

    impls = [
        Impl("numpy", lambda: lambda: b + s * c),
        Impl(BASELINE, numpy_out),
        Impl("numexpr", numexpr),
        Impl("numba", numba),
        sympile_impl(settings.backend, graph, [b, c]),
    ]
    # STREAM counts 3 arrays x 8 bytes per element (2 reads, 1 write; write-allocate traffic not counted).
    yield Case("W7", f"f64 n={n}", impls, expected=lambda: b + s * c, rtol=1e-12, bytes_moved=3 * n * 8)
