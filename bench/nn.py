"""Neural-network workloads: W3 row softmax, W4 one SGD step of an MLP with its gradient.

>>> [c.title for c in w3(Settings(quick=True))]
['f32 256x1024']
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import peers
from harness import BASELINE, Case, Impl, Settings
from peers import Unavailable
from sympile_impl import sympile_impl


# --- W3: row softmax ----------------------------------------------------------------------------------------------
def softmax_numpy(x):
    """Stable row softmax as a user writes it in numpy."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@functools.cache
def _numba_softmax():
    nb = peers.numba()

    @nb.njit(parallel=True, fastmath=False)
    def kernel(x, out):
        rows, cols = x.shape
        for i in nb.prange(rows):
            m = x[i, 0]
            for j in range(1, cols):
                m = max(m, x[i, j])
            s = 0.0
            for j in range(cols):
                e = np.exp(x[i, j] - m)
                out[i, j] = e
                s += e
            for j in range(cols):
                out[i, j] /= s
        return out

    return kernel


def w3(settings: Settings) -> Iterator[Case]:
    rows, cols = (256, 1024) if settings.quick else (4096, 1024)
    x = (np.random.default_rng(0).standard_normal((rows, cols)) * 4).astype(np.float32)

    def numpy_out():
        m, s, out = np.empty((rows, 1), x.dtype), np.empty((rows, 1), x.dtype), np.empty_like(x)

        def run():
            np.max(x, axis=1, keepdims=True, out=m)
            np.subtract(x, m, out=out)
            np.exp(out, out=out)
            np.sum(out, axis=1, keepdims=True, out=s)
            return np.divide(out, s, out=out)

        return run

    def numexpr():
        ne, out = peers.numexpr(), np.empty_like(x)

        def run():
            m = x.max(axis=1, keepdims=True)  # numexpr reduces only to a scalar or along the last axis, slowly
            ne.evaluate("exp(x - m)", local_dict={"x": x, "m": m}, out=out)
            s = out.sum(axis=1, keepdims=True)
            return ne.evaluate("out / s", local_dict={"out": out, "s": s}, out=out)

        return run

    def numba():
        kernel, out = _numba_softmax(), np.empty_like(x)
        return lambda: kernel(x, out)

    def pytensor():
        pytensor = peers.pytensor()
        pt = pytensor.tensor
        a = pt.matrix("x", dtype="float32")
        f = pytensor.function([a], pt.special.softmax(a, axis=-1))
        return lambda: f(x)

    def jax():
        jax = peers.jax()
        f, a = jax.jit(lambda a: jax.nn.softmax(a, axis=-1)), jax.device_put(x)
        return lambda: f(a).block_until_ready()

    def graph():
        import sympile.tensor as st

        a = st.fmatrix("x")
        return [a], st.softmax(a, axis=-1)

    impls = [
        Impl("numpy", lambda: lambda: softmax_numpy(x)),
        Impl(BASELINE, numpy_out),
        Impl("numexpr", numexpr),
        Impl("numba", numba),
        Impl("pytensor", pytensor),
        Impl("jax", jax),
        sympile_impl(settings.backend, graph, [x]),
    ]
    yield Case("W3", f"f32 {rows}x{cols}", impls, expected=lambda: softmax_numpy(x), rtol=1e-4, atol=1e-7,
               bytes_moved=2 * x.nbytes)  # fmt: skip


# --- W4: one SGD step of an MLP 784-512-10 ------------------------------------------------------------------------
LR = np.float32(0.1)


def mlp_data(batch: int, sizes=(784, 512, 10)) -> tuple[np.ndarray, ...]:
    """X, one-hot Y, then W1, b1, W2, b2 (float32), all from a fixed seed."""
    rng = np.random.default_rng(0)
    d, h, c = sizes
    f32 = np.float32
    X = rng.standard_normal((batch, d)).astype(f32)
    Y = np.eye(c, dtype=f32)[rng.integers(0, c, batch)]
    W1 = (rng.standard_normal((d, h)) / np.sqrt(d)).astype(f32)
    W2 = (rng.standard_normal((h, c)) / np.sqrt(h)).astype(f32)
    b1, b2 = (rng.standard_normal(h) * 0.1).astype(f32), (rng.standard_normal(c) * 0.1).astype(f32)
    return X, Y, W1, b1, W2, b2


def mlp_step_numpy(X, Y, W1, b1, W2, b2):
    """Loss and the updated parameters, forward and backward written by hand: tanh, softmax cross-entropy."""
    batch = X.shape[0]
    h = np.tanh(X @ W1 + b1)
    logits = h @ W2 + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -(Y * logp).sum() / np.float32(batch)
    d = (np.exp(logp) - Y) / np.float32(batch)
    dz = (d @ W2.T) * (1 - h * h)
    return loss, W1 - LR * (X.T @ dz), b1 - LR * dz.sum(0), W2 - LR * (h.T @ d), b2 - LR * d.sum(0)


def mlp_step_numpy_out(X, Y, W1, b1, W2, b2):
    """The same step with every temporary preallocated; returns a callable that reuses them."""
    (batch, _), hid, cls = X.shape, W1.shape[1], W2.shape[1]
    e = np.empty
    h, h2, dh = e((batch, hid), X.dtype), e((batch, hid), X.dtype), e((batch, hid), X.dtype)
    lg, p, m, s = e((batch, cls), X.dtype), e((batch, cls), X.dtype), e((batch, 1), X.dtype), e((batch, 1), X.dtype)
    gW1, gW2, gb1, gb2 = np.empty_like(W1), np.empty_like(W2), np.empty_like(b1), np.empty_like(b2)
    nW1, nW2, nb1, nb2 = np.empty_like(W1), np.empty_like(W2), np.empty_like(b1), np.empty_like(b2)
    inv_b = 1.0 / batch

    def run():
        np.add(np.matmul(X, W1, out=h), b1, out=h)
        np.tanh(h, out=h)
        np.add(np.matmul(h, W2, out=lg), b2, out=lg)
        np.subtract(lg, np.max(lg, axis=1, keepdims=True, out=m), out=lg)
        np.log(np.sum(np.exp(lg, out=p), axis=1, keepdims=True, out=s), out=s)
        np.subtract(lg, s, out=lg)  # log-probabilities
        loss = -np.vdot(Y, lg) * np.float32(inv_b)
        np.multiply(np.subtract(np.exp(lg, out=p), Y, out=p), inv_b, out=p)  # d loss / d logits
        np.matmul(h.T, p, out=gW2)
        np.sum(p, axis=0, out=gb2)
        np.matmul(p, W2.T, out=dh)
        np.subtract(1, np.multiply(h, h, out=h2), out=h2)
        np.multiply(dh, h2, out=dh)
        np.matmul(X.T, dh, out=gW1)
        np.sum(dh, axis=0, out=gb1)
        for new, old, g in ((nW1, W1, gW1), (nb1, b1, gb1), (nW2, W2, gW2), (nb2, b2, gb2)):
            np.subtract(old, np.multiply(g, LR, out=g), out=new)
        return loss, nW1, nb1, nW2, nb2

    return run


def matmuls_alone(X, Y, W1, b1, W2, b2):
    """Only the step's five matrix products (forward 2, backward 3), into preallocated buffers: W4's floor."""
    batch, hid, cls = X.shape[0], W1.shape[1], W2.shape[1]
    h, lg, dh = np.empty((batch, hid), X.dtype), np.empty((batch, cls), X.dtype), np.empty((batch, hid), X.dtype)
    gW1, gW2 = np.empty_like(W1), np.empty_like(W2)

    def run():
        np.matmul(X, W1, out=h)
        np.matmul(h, W2, out=lg)
        np.matmul(h.T, lg, out=gW2)
        np.matmul(lg, W2.T, out=dh)
        return np.matmul(X.T, dh, out=gW1)

    return run


def _mlp_loss(lib, X, Y, W1, b1, W2, b2, log_softmax):
    h = lib.tanh(X @ W1 + b1)
    logits = h @ W2 + b2
    return lib.mean(-lib.sum(Y * log_softmax(logits, axis=1), axis=1))


def w4(settings: Settings) -> Iterator[Case]:
    batch = 32 if settings.quick else 256
    data = mlp_data(batch)

    def pytensor():
        pytensor = peers.pytensor()
        pt = pytensor.tensor
        X, Y, W1, W2 = (pt.matrix(n, dtype="float32") for n in ("X", "Y", "W1", "W2"))
        b1, b2 = pt.vector("b1", dtype="float32"), pt.vector("b2", dtype="float32")
        params = [W1, b1, W2, b2]
        loss = _mlp_loss(pt, X, Y, W1, b1, W2, b2, pt.special.log_softmax)
        grads = pytensor.grad(loss, params)
        f = pytensor.function([X, Y, *params], [loss, *(p - LR * g for p, g in zip(params, grads))])
        return lambda: f(*data)

    def jax():
        jax = peers.jax()
        jnp = jax.numpy

        def loss_fn(params, X, Y):
            return _mlp_loss(jnp, X, Y, *params, jax.nn.log_softmax)

        @jax.jit
        def step(params, X, Y):
            loss, grads = jax.value_and_grad(loss_fn)(params, X, Y)
            return loss, *(p - LR * g for p, g in zip(params, grads))

        X, Y, *params = (jax.device_put(a) for a in data)
        return lambda: jax.block_until_ready(step(tuple(params), X, Y))

    def no_autodiff(name):
        def build():
            raise Unavailable(f"{name} has no autodiff; a hand-written step would be the numpy rows")

        return build

    def graph():
        import sympile
        import sympile.tensor as st

        X, Y, W1, W2 = (st.fmatrix(n) for n in ("X", "Y", "W1", "W2"))
        b1, b2 = st.fvector("b1"), st.fvector("b2")
        params = [W1, b1, W2, b2]
        loss = _mlp_loss(st, X, Y, W1, b1, W2, b2, st.log_softmax)
        grads = sympile.grad(loss, params)
        return [X, Y, *params], [loss, *(p - LR * g for p, g in zip(params, grads))]

    impls = [
        Impl("numpy", lambda: lambda: mlp_step_numpy(*data)),
        Impl(BASELINE, lambda: mlp_step_numpy_out(*data)),
        Impl("numpy matmuls alone", lambda: matmuls_alone(*data), checked=False),
        Impl("numexpr", no_autodiff("numexpr")),
        Impl("numba", no_autodiff("numba")),
        Impl("pytensor", pytensor),
        Impl("jax", jax),
        sympile_impl(settings.backend, graph, list(data), needs=("grad",)),
    ]
    yield Case("W4", f"f32 784-512-10 batch {batch}", impls, expected=lambda: mlp_step_numpy(*data), rtol=1e-3,
               atol=1e-5)  # fmt: skip
