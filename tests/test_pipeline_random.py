"""The whole optimizer pipeline on random graphs (hypothesis) against the same graph compiled with
``optimize=False``.

Graphs are DAGs, not trees: steps reuse earlier values (so fusion meets values with several consumers and
must not duplicate or swallow them), and several values are outputs at once. Steps are drawn from templates
that trigger the rewrite rules (x*1, x**2, log(1+x), exp(x)/sum(exp(x)), log(sigmoid(x)), x.T.T, ...) mixed
with plain math; values are kept bounded (tanh before exp) so the naive and the stable forms agree.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as hs

import sympile as sp
import sympile.tensor as st


def _softmax_form(a):
    e = st.exp(st.tanh(a))
    return e / st.sum(e, axis=-1, keepdims=True)


UNARY = {
    "neg": lambda a: -a,
    "sin": st.sin,
    "tanh": st.tanh,
    "sigmoid": st.sigmoid,
    "exp_tanh": lambda a: st.exp(st.tanh(a)),
    "mul_one": lambda a: a * 1,
    "add_zero": lambda a: 0 + a,
    "sub_zero": lambda a: a - 0.0,
    "neg_neg": lambda a: st.neg(-a),
    "pow2": lambda a: a**2,
    "pow3": lambda a: st.tanh(a) ** 3,
    "sqrt_abs": lambda a: abs(a) ** 0.5,
    "self_mul": lambda a: a * a,
    "log1p": lambda a: st.log(1 + st.sqr(a)),
    "expm1": lambda a: st.exp(st.tanh(a)) - 1,
    "log_exp": lambda a: st.log(st.exp(st.tanh(a))),
    "log_sigmoid": lambda a: st.log(st.sigmoid(a)),
    "log_1m_sigmoid": lambda a: st.log(1 - st.sigmoid(a)),
    "sigmoid_form": lambda a: 1 / (1 + st.exp(-a)),
    "double_t": lambda a: a.T.T,
    "lift_t": lambda a: (st.exp(st.tanh(a)) + 1).T,
    "softmax_form": lambda a: _softmax_form(a) if a.ndim else a,
    "logsumexp_form": lambda a: st.log(st.sum(st.exp(st.tanh(a)), axis=-1, keepdims=True)) if a.ndim else a,
    "sum_keep": lambda a: st.sum(a, axis=0, keepdims=True) if a.ndim else a,
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (1 + st.sqr(b)),
    "max": st.maximum,
}


@hs.composite
def graphs(draw):
    """(dtype, list of steps, output indices); a step is (name, argument indices into the values so far)."""
    dtype = draw(hs.sampled_from(["float64", "float64", "float32"]))
    steps = []
    n_values = 3  # the inputs: a matrix, a vector and a scalar
    for _ in range(draw(hs.integers(1, 10))):
        if draw(hs.booleans()):
            name = draw(hs.sampled_from(sorted(UNARY)))
            args = (draw(hs.integers(0, n_values - 1)),)
        else:
            name = draw(hs.sampled_from(sorted(BINARY)))
            args = (draw(hs.integers(0, n_values - 1)), draw(hs.integers(0, n_values - 1)))
        steps.append((name, args))
        n_values += 1
    extra = draw(hs.lists(hs.integers(3, n_values - 1), max_size=2))
    return dtype, steps, sorted({n_values - 1, *extra})


def build(dtype, steps, outputs):
    x, y, s = st.matrix("x", dtype=dtype), st.vector("y", dtype=dtype), st.scalar("s", dtype=dtype)
    values = [x, y, s]
    for name, args in steps:
        fn = UNARY.get(name) or BINARY[name]
        values.append(fn(*(values[a] for a in args)))
    return [x, y, s], [values[k] for k in outputs]


@settings(max_examples=50, deadline=None, derandomize=True)
@given(graphs(), hs.integers(0, 2**32 - 1))
def test_pipeline_matches_unoptimized(graph, seed):
    dtype, steps, outputs = graph
    inputs, outs = build(dtype, steps, outputs)
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-2, 2, shape).astype(dtype) for shape in ((3, 3), (3,), ())]
    optimized = sp.function(inputs, outs, on_unused_input="ignore")
    plain = sp.function(inputs, outs, optimize=False, on_unused_input="ignore")
    rtol, atol = (1e-4, 1e-5) if dtype == "float32" else (1e-9, 1e-12)
    for got, want in zip(optimized(*arrays), plain(*arrays)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
