"""``sympile.gradient``: symbolic differentiation with Theano/PyTensor names.

``grad`` returns a graph like any other: it is optimized, compiled and can be differentiated again.

>>> import sympile
>>> import sympile.tensor as st
>>> x = st.dscalar('x')
>>> gx = sympile.grad(x ** 3, x)
>>> float(gx.eval({x: 2.0}))
12.0
"""

from __future__ import annotations

import warnings

import numpy as np

from sympile.compiler.build import zeros_like
from sympile.compiler.errors import GraphTypeError, GraphValueError
from sympile.compiler.gradients import grad_nodes
from sympile.compiler.graph import input_node, make_node, substitute

from .variable import TensorVariable, as_tensor_variable, wrap

__all__ = ["grad", "jacobian", "hessian", "Lop", "Rop", "verify_grad", "disconnected_grad", "zero_grad",
           "DisconnectedInputError", "GradientError"]  # fmt: skip


class DisconnectedInputError(ValueError):
    """The cost does not depend on a variable the gradient was asked for."""


class GradientError(AssertionError):
    """``verify_grad`` found a symbolic gradient that disagrees with finite differences."""

    def __init__(self, arg: int, err_pos: int, shape: tuple, val1: float, val2: float, abs_err: float,
                 rel_err: float, abs_tol: float, rel_tol: float):  # fmt: skip
        self.arg, self.err_pos, self.shape = arg, err_pos, shape
        self.val1, self.val2, self.abs_err, self.rel_err = val1, val2, abs_err, rel_err
        self.abs_tol, self.rel_tol = abs_tol, rel_tol
        super().__init__(
            f"gradient of input {arg} (shape {shape}) disagrees with finite differences: largest error at flat "
            f"position {err_pos}: symbolic {val1!r} vs numeric {val2!r}, abs error {abs_err:.3g} (tol "
            f"{abs_tol:.3g}), rel error {rel_err:.3g} (tol {rel_tol:.3g})"
        )


def _as_list(x):
    return (list(x), True) if isinstance(x, (list, tuple)) else ([x], False)


def _label(v: TensorVariable) -> str:
    return f"{v.name!r} ({v.node.describe()})" if v.name else v.node.describe()


def grad(cost, wrt, consider_constant=None, disconnected_inputs="raise", known_grads=None):
    """The gradient of the scalar ``cost`` with respect to ``wrt`` (a variable or a list: same structure back).

    ``consider_constant``: variables treated as constants. ``disconnected_inputs``: what to do when the cost
    does not depend on a variable of ``wrt``: 'raise', or 'warn' / 'ignore' and return zeros of its shape and
    dtype. ``known_grads``: ``{variable: cotangent}`` added at the start (``cost`` may then be ``None``).
    Gradients have their variable's dtype; shared variables are variables like any other.

    >>> import sympile.tensor as st
    >>> w = st.dvector('w')
    >>> g = grad((w ** 2).sum(), w)
    >>> g.eval({w: [1.0, 2.0]}).tolist()
    [2.0, 4.0]
    """
    if disconnected_inputs not in ("raise", "warn", "ignore"):
        raise ValueError(f"disconnected_inputs must be 'raise', 'warn' or 'ignore', got {disconnected_inputs!r}")
    wrt_list, is_list = _as_list(wrt)
    wrt_vars = []
    for i, w in enumerate(wrt_list):
        if not isinstance(w, TensorVariable):
            raise TypeError(f"grad: wrt[{i}] must be a symbolic variable, got {type(w).__name__} {w!r}")
        if np.dtype(w.dtype).kind != "f":
            raise GraphTypeError(
                f"grad: cannot differentiate with respect to {_label(w)}: its dtype is {w.dtype}, gradients are "
                "defined for float variables only"
            )
        wrt_vars.append(w)
    cost_node = None
    if cost is not None:
        cost = as_tensor_variable(cost)
        if cost.ndim != 0:
            raise GraphTypeError(
                f"grad: the cost must be a scalar, got {cost.type.short()} ({cost.node.describe()}); reduce it "
                "first, e.g. cost.sum() or cost.mean()"
            )
        if np.dtype(cost.dtype).kind != "f":
            raise GraphTypeError(f"grad: the cost must be a float scalar, got {cost.dtype} ({cost.node.describe()})")
        cost_node = cost.node
    elif not known_grads:
        raise ValueError("grad: give a cost, or known_grads when cost is None")
    known = {}
    for var, g in (known_grads or {}).items():
        var, g = as_tensor_variable(var), as_tensor_variable(g)
        known[var.node] = g.node
    constants = [as_tensor_variable(c).node for c in (consider_constant or [])]
    grads = grad_nodes(cost_node, [w.node for w in wrt_vars], known, constants)
    out = []
    for w, g in zip(wrt_vars, grads):
        if g is None:
            msg = (f"grad: the cost does not depend on {_label(w)}; pass disconnected_inputs='warn' or 'ignore' to "
                   "get zeros for it")  # fmt: skip
            if disconnected_inputs == "raise":
                raise DisconnectedInputError(msg)
            if disconnected_inputs == "warn":
                warnings.warn(msg, stacklevel=2)
            g = zeros_like(w.node)
        out.append(wrap(g))
    return out if is_list else out[0]


def _static_size(expr: TensorVariable, what: str) -> int:
    if None in expr.static_shape:
        raise GraphValueError(
            f"{what}: the shape of {_label(expr)} is {expr.type.short()}, not known statically; the Jacobian is "
            "built one row per element, so give the inputs static shapes, e.g. st.tensor('float64', shape=(3,))"
        )
    return int(np.prod(expr.static_shape, dtype=np.int64))


def jacobian(expression, wrt, consider_constant=None, disconnected_inputs="raise"):
    """The Jacobian of ``expression`` with respect to ``wrt``: shape ``expression.shape + wrt.shape``.

    Built one row per element of ``expression``, whose shape must therefore be known statically.

    >>> import sympile.tensor as st
    >>> x = st.tensor('float64', shape=(2,), name='x')
    >>> jacobian(x ** 2, x).eval({x: [1.0, 3.0]}).tolist()
    [[2.0, 0.0], [0.0, 6.0]]
    """
    from . import tensor

    expression = as_tensor_variable(expression)
    wrt_list, is_list = _as_list(wrt)
    if expression.ndim == 0:
        out = grad(expression, wrt_list, consider_constant, disconnected_inputs)
        return out if is_list else out[0]
    size = _static_size(expression, "jacobian")
    if size == 0:
        raise GraphValueError(f"jacobian: {_label(expression)} has no elements")
    flat = tensor.flatten(expression)
    rows = [grad(flat[i], wrt_list, consider_constant, disconnected_inputs) for i in range(size)]
    out = []
    for k, w in enumerate(wrt_list):
        stacked = tensor.stack([row[k] for row in rows])
        shape = [*expression.static_shape, *(w.static_shape[i] if w.static_shape[i] is not None else w.shape[i]
                                             for i in range(w.ndim))]  # fmt: skip
        out.append(tensor.reshape(stacked, shape))
    return out if is_list else out[0]


def hessian(cost, wrt, consider_constant=None, disconnected_inputs="raise"):
    """The matrix of second derivatives of the scalar ``cost`` with respect to each vector in ``wrt``.

    >>> import sympile.tensor as st
    >>> x = st.tensor('float64', shape=(2,), name='x')
    >>> hessian((x ** 3).sum(), x).eval({x: [1.0, 2.0]}).tolist()
    [[6.0, 0.0], [0.0, 12.0]]
    """
    wrt_list, is_list = _as_list(wrt)
    out = []
    for w in wrt_list:
        g = grad(cost, w, consider_constant, disconnected_inputs)
        out.append(jacobian(g, w, consider_constant, disconnected_inputs))
    return out if is_list else out[0]


def Lop(f, wrt, eval_points, disconnected_inputs="raise"):  # noqa: N802 - Theano's name
    """The vector-Jacobian product ``eval_points . df/dwrt`` (``eval_points`` has ``f``'s shape).

    >>> import sympile.tensor as st
    >>> x, v = st.dvectors('x', 'v')
    >>> Lop(x ** 2, x, v).eval({x: [1.0, 2.0], v: [1.0, 10.0]}).tolist()
    [2.0, 40.0]
    """
    f_list, _ = _as_list(f)
    v_list, _ = _as_list(eval_points)
    if len(f_list) != len(v_list):
        raise ValueError(f"Lop: {len(f_list)} expressions but {len(v_list)} eval_points")
    known = {}
    for fi, vi in zip(f_list, v_list):
        fi, vi = as_tensor_variable(fi), as_tensor_variable(vi)
        if vi.ndim != fi.ndim:
            raise GraphTypeError(f"Lop: eval point of rank {vi.ndim} for {_label(fi)} of rank {fi.ndim}")
        known[fi] = vi
    return grad(None, wrt, disconnected_inputs=disconnected_inputs, known_grads=known)


def Rop(f, wrt, eval_points, disconnected_inputs="raise"):  # noqa: N802 - Theano's name
    """The Jacobian-vector product ``df/dwrt . eval_points`` (``eval_points`` has ``wrt``'s shape).

    Computed by the double-Lop trick: ``u -> Lop(f, wrt, u)`` is linear in ``u``, so its own Lop with respect
    to ``u`` is the transposed map, the Rop.

    >>> import sympile.tensor as st
    >>> x, v = st.dvectors('x', 'v')
    >>> Rop(x ** 2, x, v).eval({x: [1.0, 2.0], v: [1.0, 10.0]}).tolist()
    [2.0, 40.0]
    """
    f_list, f_is_list = _as_list(f)
    wrt_list, _ = _as_list(wrt)
    v_list, _ = _as_list(eval_points)
    if len(wrt_list) != len(v_list):
        raise ValueError(f"Rop: {len(wrt_list)} variables but {len(v_list)} eval_points")
    f_list = [as_tensor_variable(fi) for fi in f_list]
    dummies = [wrap(input_node(fi.dtype, fi.static_shape, name="rop_u")) for fi in f_list]
    vjps = Lop(f_list, wrt_list, dummies, disconnected_inputs=disconnected_inputs)
    known = {}
    for w, gw, v in zip(wrt_list, vjps, v_list):
        v = as_tensor_variable(v)
        if v.ndim != w.ndim:
            raise GraphTypeError(f"Rop: eval point of rank {v.ndim} for {_label(w)} of rank {w.ndim}")
        known[gw] = v
    out = grad(None, dummies, disconnected_inputs="ignore", known_grads=known)
    # linear in the dummies, so they are gone from a well-formed result; any left over only multiply zeros
    zeros = {d.node: zeros_like(fi.node) for d, fi in zip(dummies, f_list)}
    out = [wrap(n) for n in substitute([o.node for o in out], zeros)]
    return out if f_is_list else out[0]


def disconnected_grad(x) -> TensorVariable:
    """``x``, through which no gradient flows (a "stop gradient"); variables only below it are disconnected."""
    return wrap(make_node("disconnected_grad", [as_tensor_variable(x).node]))


def zero_grad(x) -> TensorVariable:
    """``x``, whose gradient is zero: the variables below it stay connected but get zeros."""
    return wrap(make_node("zero_grad", [as_tensor_variable(x).node]))


_EPS = {"float64": 1e-6, "float32": 1e-3, "float16": 1e-1}
_TOL = {"float64": 1e-4, "float32": 1e-2, "float16": 5e-2}


def verify_grad(fun, pt, n_tests=2, rng=None, eps=None, abs_tol=None, rel_tol=None):
    """Check ``grad`` of ``fun`` at the point ``pt`` (a list of arrays) against finite differences.

    As in Theano: the output is projected on a random tensor to get a scalar cost, its symbolic gradient is
    compared with central differences of step ``eps``; an element is wrong when both its absolute and its
    relative error exceed the tolerances. Raises :class:`GradientError` with the largest error found.

    >>> import numpy as np, sympile.tensor as st
    >>> verify_grad(lambda x: st.tanh(x) * x, [np.array([0.5, -1.0])], rng=np.random.default_rng(0))
    """
    from .function import function

    rng = rng if rng is not None else np.random.default_rng()
    pt = [np.array(p, dtype=float) if np.asarray(p).dtype.kind != "f" else np.array(p) for p in pt]
    from .constructors import tensor

    # as in Theano, only size-1 dimensions are static (broadcastable): the rest are checked as users have them
    inputs = [
        tensor(p.dtype.name, [1 if d == 1 else None for d in p.shape], name=f"input{i}") for i, p in enumerate(pt)
    ]
    out = as_tensor_variable(fun(*inputs))
    if np.dtype(out.dtype).kind != "f":
        raise GraphTypeError(f"verify_grad: fun must return a float tensor, got {out.type.short()}")
    dtypes = [p.dtype.name for p in pt] + [out.dtype]
    eps = eps if eps is not None else max(_EPS.get(d, 1e-6) for d in dtypes)
    abs_tol = abs_tol if abs_tol is not None else max(_TOL.get(d, 1e-4) for d in dtypes)
    rel_tol = rel_tol if rel_tol is not None else max(_TOL.get(d, 1e-4) for d in dtypes)
    f_out = function(inputs, out, on_unused_input="ignore")
    out_shape = np.shape(f_out(*pt))
    proj_in = tensor(out.dtype, [None] * len(out_shape), name="projection")
    cost = (out * proj_in).sum()
    grads = grad(cost, inputs, disconnected_inputs="ignore")
    f_cost = function([*inputs, proj_in], cost, on_unused_input="ignore")
    f_grad = function([*inputs, proj_in], grads, on_unused_input="ignore")
    for _ in range(n_tests):
        proj = np.asarray(rng.random(out_shape) + 0.5, dtype=out.dtype)
        symbolic = f_grad(*pt, proj)
        worst = None
        for k, p in enumerate(pt):
            numeric = _finite_differences(lambda v, k=k, proj=proj: f_cost(*pt[:k], v, *pt[k + 1 :], proj), p, eps)
            sym = np.asarray(symbolic[k], dtype=np.float64).reshape(-1)
            abs_err = np.abs(sym - numeric)
            with np.errstate(divide="ignore", invalid="ignore"):
                rel_err = abs_err / (np.abs(sym) + np.abs(numeric))
            rel_err = np.where(abs_err == 0, 0.0, rel_err)
            bad = (abs_err > abs_tol) & (rel_err > rel_tol) | ~np.isfinite(sym)
            if bad.any():
                pos = int(np.argmax(np.where(bad, np.nan_to_num(rel_err, nan=np.inf), -1)))
                err = (k, pos, p.shape, float(sym[pos]), float(numeric[pos]), float(abs_err[pos]),
                       float(rel_err[pos]))  # fmt: skip
                if worst is None or err[6] > worst[6]:
                    worst = err
        if worst is not None:
            raise GradientError(*worst, abs_tol, rel_tol)


def _finite_differences(f, x: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of the scalar function ``f`` at ``x``, flattened."""
    out = np.empty(x.size)
    flat = x.reshape(-1)
    for i in range(x.size):
        plus, minus = flat.copy(), flat.copy()
        plus[i] += eps
        minus[i] -= eps
        out[i] = (float(f(plus.reshape(x.shape))) - float(f(minus.reshape(x.shape)))) / (2 * eps)
    return out
