"""Optimizer speed: the whole default pipeline on a 1,000-node graph and on the gradient graph of a 10-layer MLP.

Not a test (no timing asserts): prints the median time of ``optimize`` over several runs, against the 100 ms
target, with the graph sizes before and after.

    .venv/bin/python bench/optimizer.py
"""

from __future__ import annotations

import gc
import random
import statistics
import time

import numpy as np

import sympile as sp
import sympile.tensor as st
from sympile.compiler.graph import toposort
from sympile.compiler.pipeline import optimize

TARGET_MS = 100.0


def big_graph(n_nodes: int = 1000, seed: int = 0):
    """A random graph of about ``n_nodes`` nodes: elementwise math, reductions, transposes, reshapes."""
    rng = random.Random(seed)
    x, y = st.dmatrices("x", "y")
    v = st.dvector("v")
    pool = [x, y, x.T, y * 2.0]
    unary = [st.exp, st.sin, st.tanh, st.sigmoid, lambda a: -a, lambda a: a * 1, lambda a: a**2, st.log1p]
    binary = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b, lambda a, b: a / (1 + b * b)]
    outs: list = []

    def size() -> int:  # nodes reachable from the outputs the graph will have
        return len(toposort([o.node for o in outs + pool[-1:]]))

    while len(pool) % 50 or size() < n_nodes:
        r = rng.random()
        if r < 0.45:
            pool.append(rng.choice(unary)(rng.choice(pool[-20:])))
        elif r < 0.85:
            pool.append(rng.choice(binary)(rng.choice(pool[-20:]), rng.choice(pool)))
        elif r < 0.93:
            pool.append(rng.choice(pool[-10:]) + v)
        elif r < 0.97:
            outs.append(st.sum(rng.choice(pool[-10:]), axis=rng.choice([0, 1])))
        else:
            pool.append(rng.choice(pool[-10:]).T)
    outs.append(pool[-1])
    return [x, y, v], outs


def mlp_gradient_graph(layers: int = 10, width: int = 64):
    """Loss and gradients of a ``layers``-deep tanh MLP with a softmax cross-entropy head."""
    x, labels = st.dmatrix("x"), st.ivector("labels")
    params, h = [], x
    rng = np.random.default_rng(0)
    for k in range(layers):
        w = sp.shared(rng.normal(0, width**-0.5, (width, width)), name=f"W{k}")
        b = sp.shared(np.zeros(width), name=f"b{k}")
        params += [w, b]
        pre = st.dot(h, w) + b
        h = st.tanh(pre) if k < layers - 1 else pre
    prob = st.exp(h) / st.sum(st.exp(h), axis=1, keepdims=True)
    loss = -st.mean(st.log(prob)[st.arange(x.shape[0]), labels])
    grads = sp.grad(loss, params)
    return [x, labels], [loss, *grads]


def time_pipeline(inputs, outputs, repeat: int = 15) -> tuple[float, float, int, int]:
    in_nodes, out_nodes = [i.node for i in inputs], [o.node for o in outputs]
    times = []
    for _ in range(repeat):
        gc.collect()  # each run starts with the same heap: garbage of earlier runs is not charged to it
        start = time.perf_counter()
        optimized, _log = optimize(in_nodes, out_nodes)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times), len(toposort(out_nodes)), len(toposort(optimized))


def main() -> None:
    for label, (inputs, outputs) in [
        ("1,000-node random graph", big_graph()),
        ("10-layer MLP loss + gradients", mlp_gradient_graph()),
    ]:
        ms, best, before, after = time_pipeline(inputs, outputs)
        verdict = "OK" if ms < TARGET_MS else "OVER"
        print(f"{label:30s} {before:5d} -> {after:4d} nodes  median {ms:5.1f} ms  min {best:5.1f} ms  ({verdict})")
    print(f"target: under {TARGET_MS:.0f} ms each")


if __name__ == "__main__":
    main()
