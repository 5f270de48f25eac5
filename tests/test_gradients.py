"""Every differentiable op's gradient rule against central finite differences (``verify_grad``, float64)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

import sympile as sp
import sympile.tensor as st
from sympile.compiler.optable import OPS
from sympile.gradient import verify_grad


def _rng(seed=0):
    return np.random.default_rng(seed)


def uniform(lo, hi, shape, seed=0):
    return _rng(seed).uniform(lo, hi, shape)


def away_from_zero(shape, seed=0):
    """Values in +-[0.5, 2]: where abs/sign-like ops are smooth."""
    r = _rng(seed)
    return r.uniform(0.5, 2.0, shape) * r.choice([-1.0, 1.0], shape)


def check(fun, *pt, seed=0, **kw):
    verify_grad(fun, [np.asarray(p, dtype=np.float64) for p in pt], n_tests=1, rng=_rng(seed), **kw)


# name -> domain (lo, hi) of the argument
UNARY = {
    "neg": (-2, 2), "sqr": (-2, 2), "exp": (-2, 2), "exp2": (-2, 2), "expm1": (-2, 2), "sqrt": (0.2, 3),
    "log": (0.2, 3), "log2": (0.2, 3), "log10": (0.2, 3), "log1p": (-0.8, 3), "sin": (-3, 3), "cos": (-3, 3),
    "tan": (-1.2, 1.2), "arcsin": (-0.9, 0.9), "arccos": (-0.9, 0.9), "arctan": (-3, 3), "sinh": (-2, 2),
    "cosh": (-2, 2), "tanh": (-2, 2), "arcsinh": (-3, 3), "arccosh": (1.2, 3), "arctanh": (-0.9, 0.9),
    "sigmoid": (-4, 4), "softplus": (-4, 4), "erf": (-2, 2), "erfc": (-2, 2),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name):
    lo, hi = UNARY[name]
    check(getattr(st, name), uniform(lo, hi, (2, 3)))


@pytest.mark.parametrize("name", ["abs", "reciprocal"])
def test_unary_away_from_zero(name):
    check(getattr(st, name), away_from_zero((2, 3)))


@pytest.mark.parametrize(
    "name, a_shape, b_shape",
    [("add", (2, 3), (3,)), ("sub", (2, 1), (1, 3)), ("mul", (2, 3), (2, 3)), ("mul", (), (3,)),
     ("arctan2", (2, 3), (2, 3)), ("arctan2", (3,), (2, 1))],
)  # fmt: skip
def test_binary_broadcasting(name, a_shape, b_shape):
    check(getattr(st, name), uniform(-2, 2, a_shape, 1), uniform(-2, 2, b_shape, 2))


def test_true_div_and_mod():
    check(st.true_div, uniform(-2, 2, (2, 3)), away_from_zero((3,), 1))
    # a % b is smooth away from multiples of b: keep a / b in (k + 0.1, k + 0.9)
    b = np.array([1.3, -0.7, 2.1])
    a = b * (np.array([0.2, 1.5, -1.7]) + 0.0)
    check(st.mod, a, b)


def test_pow_with_respect_to_both_arguments():
    check(st.pow, uniform(0.3, 2, (2, 3)), uniform(-2, 2, (2, 3), 1))
    check(lambda a: a**3, uniform(-2, 2, (4,)))  # integer exponent: a constant, only a gets a gradient


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_minimum(name):
    a, b = uniform(-2, 2, (3, 4), 1), uniform(-2, 2, (4,), 2)
    check(getattr(st, name), a, b)
    x = st.dvector("x")
    # ties split the gradient evenly: relu'(0) = 1/2
    g = sp.grad(getattr(st, name)(x, 0.0).sum(), x)
    np.testing.assert_allclose(g.eval({x: [-1.0, 0.0, 1.0]}), [0, 0.5, 1] if name == "maximum" else [1, 0.5, 0])


def test_clip_and_where():
    x = np.array([-1.5, -0.3, 0.2, 0.9, 1.7])
    check(lambda v: st.clip(v, -0.5, 1.0), x)
    check(lambda v, lo, hi: st.clip(v, lo, hi), x, [-0.5], [1.0])
    mask = np.array([True, False, True, False, True])
    check(lambda a, b: st.where(mask, a, b), x, uniform(-1, 1, (2, 5)))


def test_cast_float_to_float_passes_gradient():
    x = st.dvector("x")
    g = sp.grad((st.cast(x, "float32") * 3).sum(), x)
    assert g.dtype == "float64"
    np.testing.assert_array_equal(g.eval({x: [1.0, 2.0]}), [3.0, 3.0])
    check(lambda v: st.cast(st.cast(v, "float32"), "float64") * v, uniform(-1, 1, (3,)), eps=1e-2, rel_tol=1e-3)


@pytest.mark.parametrize("axis", [None, 0, (0, 2), -1])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean", "prod", "max", "min", "var", "std", "logsumexp"])
def test_reductions(name, axis, keepdims):
    check(lambda v: getattr(st, name)(v, axis=axis, keepdims=keepdims), uniform(0.5, 2, (2, 3, 2)))


def test_var_std_ddof():
    check(lambda v: st.var(v, axis=1, ddof=1), uniform(-1, 1, (2, 4)))
    check(lambda v: st.std(v, ddof=1), uniform(-1, 1, (5,)))


def test_prod_with_zeros():
    x = st.dvector("x")
    g = sp.grad(st.prod(x), x)
    np.testing.assert_allclose(g.eval({x: [2.0, 0.0, 3.0]}), [0.0, 6.0, 0.0])
    np.testing.assert_allclose(g.eval({x: [0.0, 0.0, 3.0]}), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(g.eval({x: [2.0, 5.0, 3.0]}), [15.0, 6.0, 10.0])
    check(lambda v: st.prod(v, axis=1), [[2.0, 0.0, 3.0], [0.0, 0.0, 1.5], [1.0, 2.0, -1.0]])


def test_max_min_ties_share_the_gradient():
    x = st.dmatrix("x")
    for fn, value, want in [(st.max, [[1.0, 3.0, 3.0]], [[0, 0.5, 0.5]]), (st.min, [[2.0, 2.0, 2.0]], [[1 / 3] * 3])]:
        np.testing.assert_allclose(sp.grad(fn(x, axis=1).sum(), x).eval({x: value}), want)


@pytest.mark.parametrize(
    "key",
    [(slice(1, None),), (slice(None, None, -1), 0), (None, 1), (Ellipsis, slice(0, 2)), (np.array([0, 1, 0, 0]),),
     (np.array([1, 1]), slice(None)), (np.array([[True, False, True], [False, True, True]]),)],
)  # fmt: skip
def test_getitem(key):
    check(lambda v: v[key], uniform(-1, 1, (2, 3)))


def test_getitem_repeated_indices_accumulate():
    x = st.dvector("x")
    g = sp.grad(x[[0, 2, 0, 0]].sum(), x)
    np.testing.assert_array_equal(g.eval({x: [1.0, 2.0, 3.0]}), [3.0, 0.0, 1.0])


def test_getitem_symbolic_index():
    i = st.lscalar("i")
    x = st.dvector("x")
    g = sp.grad(x[i : i + 2].sum() * x[i], x)
    # d/dx (x[i] + x[i+1]) x[i] = (x[i] + (x[i] + x[i+1]), x[i]) at i and i + 1
    np.testing.assert_allclose(sp.function([x, i], g)([1.0, 2.0, 3.0, 4.0], 1), [0, 7, 2, 0])


@pytest.mark.parametrize("mode", ["set", "inc"])
def test_setitem(mode):
    op = st.set_subtensor if mode == "set" else st.inc_subtensor
    check(lambda x, y: op(x[1:, ::2], y), uniform(-1, 1, (3, 4)), uniform(-1, 1, (2,), 1))
    check(lambda x, y: op(x[[0, 2]], y), uniform(-1, 1, (3, 4)), uniform(-1, 1, (2, 4), 1))
    check(lambda x, y: op(x[0], y) ** 2, uniform(-1, 1, (3, 4)), uniform(-1, 1, (), 1))


def test_inc_subtensor_repeated_indices():
    x, y = st.dvector("x"), st.dvector("y")
    out = st.inc_subtensor(x[[0, 0, 1]], y)
    gx, gy = sp.grad((out * [1.0, 2.0, 3.0]).sum(), [x, y])
    f = sp.function([x, y], [gx, gy])
    rx, ry = f([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(rx, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(ry, [1.0, 1.0, 2.0])


@pytest.mark.parametrize("a_shape, b_shape", [((), (3,)), ((3,), ()), ((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 2)),
                                              ((2, 3), (3, 4)), ((2, 2, 3), (3, 2)), ((2, 3), (2, 3, 2))])  # fmt: skip
def test_dot(a_shape, b_shape):
    check(st.dot, uniform(-1, 1, a_shape, 1), uniform(-1, 1, b_shape, 2))


MATMUL_SHAPES = [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((2, 2, 3), (3, 2)),
                 ((2, 1, 2, 3), (3, 3, 2)), ((3,), (2, 3, 2)), ((2, 2, 3), (3,))]  # fmt: skip


@pytest.mark.parametrize("a_shape, b_shape", MATMUL_SHAPES)
def test_matmul(a_shape, b_shape):
    check(st.matmul, uniform(-1, 1, a_shape, 1), uniform(-1, 1, b_shape, 2))


@pytest.mark.parametrize("a_shape, b_shape, axes", [((2, 3, 4), (3, 4, 2), 2), ((2, 3), (3, 2), 1), ((2, 3), (4,), 0),
                                                    ((2, 3, 4), (4, 2, 3), [[1, 2], [2, 0]])])  # fmt: skip
def test_tensordot(a_shape, b_shape, axes):
    check(lambda a, b: st.tensordot(a, b, axes), uniform(-1, 1, a_shape, 1), uniform(-1, 1, b_shape, 2))


def test_outer():
    check(st.outer, uniform(-1, 1, (3,), 1), uniform(-1, 1, (2, 2), 2))


def test_shape_ops():
    x = uniform(-1, 1, (2, 3, 4))
    check(lambda v: v.reshape((4, -1)) * np.arange(6.0), x)
    check(lambda v: v.flatten(2), x)
    check(lambda v: v.transpose(2, 0, 1) * np.arange(3.0), x)
    check(lambda v: v.dimshuffle("x", 2, 0, 1), x)
    check(lambda v: st.squeeze(v, 1) * np.arange(3.0), uniform(-1, 1, (3, 1)))
    check(lambda a, b: st.concatenate([a, b, a], axis=1), uniform(-1, 1, (2, 3), 1), uniform(-1, 1, (2, 2), 2))
    check(lambda a, b: st.stack([a, b], axis=1) ** 2, uniform(-1, 1, (2, 3), 1), uniform(-1, 1, (2, 3), 2))
    check(lambda v: st.alloc(v, 3, 2, 4), uniform(-1, 1, (2, 1)))
    check(lambda v: v * st.ones_like(v) + st.zeros((2, 3)), uniform(-1, 1, (2, 3)))


def test_concatenate_symbolic_sizes():
    a, b = st.dvectors("a", "b")
    ga, gb = sp.grad((st.concatenate([a, b]) * st.arange(5.0)).sum(), [a, b])
    ra, rb = sp.function([a, b], [ga, gb])([1.0, 1.0], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(ra, [0, 1])
    np.testing.assert_array_equal(rb, [2, 3, 4])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0, None])
def test_softmax(name, axis):
    check(lambda v: getattr(st, name)(v, axis=axis), uniform(-2, 2, (2, 3)))


def test_gradient_ops():
    x = uniform(-1, 1, (3,))
    check(lambda v: v * sp.gradient.disconnected_grad(v) + v, x, abs_tol=np.inf)  # no error on a consistent fn
    xv = st.dvector("x")
    g = sp.grad((xv * sp.gradient.disconnected_grad(xv)).sum(), xv)
    np.testing.assert_array_equal(g.eval({xv: [1.0, 2.0]}), [1.0, 2.0])  # only the left factor
    g = sp.grad((xv * sp.gradient.zero_grad(xv**2)).sum(), xv)
    np.testing.assert_array_equal(g.eval({xv: [1.0, 2.0]}), [1.0, 4.0])


def test_every_op_has_a_gradient_rule():
    # fused kernels appear only after optimization, on graphs whose gradients were taken before
    missing = [name for name, op in OPS.items() if op.kind not in ("leaf", "fused") and op.grad is None]
    assert not missing, f"ops without a gradient rule (use build.NO_GRAD if none exists): {missing}"


# --- random graphs ----------------------------------------------------------------------------------------------
UNARY_SAFE = {  # smooth everywhere on the reals
    "tanh": st.tanh, "sin": st.sin, "sigmoid": st.sigmoid, "softplus": st.softplus, "sqr": st.sqr,
    "exp_tanh": lambda v: st.exp(st.tanh(v)), "erf": st.erf, "arctan": st.arctan, "neg": st.neg,
    "log1p_sqr": lambda v: st.log1p(v * v), "softmax": st.softmax, "sum_keep": lambda v: v * v.sum(keepdims=True),
    "mean0": lambda v: v - v.mean(axis=0), "logsumexp": lambda v: v - st.logsumexp(v, axis=-1, keepdims=True),
    "var1": lambda v: v * st.var(v, axis=1, keepdims=True), "max_t": lambda v: v.T.max(axis=1) * v,
}  # fmt: skip
BINARY_SAFE = {
    "add": st.add, "sub": st.sub, "mul": st.mul, "div": lambda a, b: a / (1.5 + st.tanh(b)),
    "arctan2": lambda a, b: st.arctan2(a, 2.0 + st.sigmoid(b)), "dot": lambda a, b: st.dot(a * b, _W),
}  # fmt: skip


_W = np.linspace(-1, 1, 9).reshape(3, 3)


@hs.composite
def random_graph(draw):
    """A random expression over 1-3 (2, 3) matrices, as a list of (kind, name, operand indices) steps; every
    step's value is a (2, 3) matrix again."""
    n_inputs = draw(hs.integers(1, 3))
    steps = []
    for k in range(draw(hs.integers(1, 6))):
        n_values = n_inputs + k
        if draw(hs.booleans()):
            steps.append(("u", draw(hs.sampled_from(sorted(UNARY_SAFE))), (draw(hs.integers(0, n_values - 1)),)))
        else:
            ops = (draw(hs.integers(0, n_values - 1)), draw(hs.integers(0, n_values - 1)))
            steps.append(("b", draw(hs.sampled_from(sorted(BINARY_SAFE))), ops))
    return n_inputs, steps, draw(hs.integers(0, 2**16))


def _build(steps, inputs):
    values = list(inputs)
    for kind, name, ops in steps:
        fn = UNARY_SAFE[name] if kind == "u" else BINARY_SAFE[name]
        values.append(fn(*(values[i] for i in ops)))
    return values[-1]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graph())
def test_random_graphs_against_finite_differences(case):
    n_inputs, steps, seed = case
    pt = [uniform(-1.5, 1.5, (2, 3), seed + i) for i in range(n_inputs)]
    check(lambda *xs: _build(steps, xs), *pt, seed=seed)
