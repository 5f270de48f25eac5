"""Linear algebra: dot (np.dot's rules), matmul (np.matmul's rules, batched), tensordot."""

from __future__ import annotations

import numpy as np

from .. import build as b_
from ..errors import GraphTypeError, GraphValueError
from ..optable import OPS, defop
from ..types import TensorType, broadcast_shapes, shape_str
from .inference import normalize_axis, result_dtype


def _check_same(da, db, a_shape, b_shape):
    if da is not None and db is not None and da != db:
        raise GraphValueError(f"shapes {shape_str(a_shape)} and {shape_str(b_shape)} are not aligned: {da} != {db}")


def _dot_infer(inputs, attrs):
    a, b = inputs
    dtype = result_dtype(np.dot, inputs)
    if a.ndim == 0 or b.ndim == 0:
        return TensorType(dtype, a.shape if b.ndim == 0 else b.shape)
    kb = -2 if b.ndim >= 2 else -1
    _check_same(a.shape[-1], b.shape[kb], a.shape, b.shape)
    b_rest = b.shape[:-2] + b.shape[-1:] if b.ndim >= 2 else ()
    return TensorType(dtype, a.shape[:-1] + b_rest)


defop("dot", 2, _dot_infer, lambda attrs, a, b: np.dot(a, b), "linalg")


def _matmul_infer(inputs, attrs):
    a, b = inputs
    if a.ndim == 0 or b.ndim == 0:
        raise GraphValueError("matmul does not accept scalars (use * or dot)")
    dtype = result_dtype(np.matmul, inputs, ndim0=False)
    ash = a.shape if a.ndim >= 2 else (1,) + a.shape
    bsh = b.shape if b.ndim >= 2 else b.shape + (1,)
    _check_same(ash[-1], bsh[-2], a.shape, b.shape)
    batch = broadcast_shapes(ash[:-2], bsh[:-2], where=" (matmul batch dimensions)")
    core = (ash[-2] if a.ndim >= 2 else None, bsh[-1] if b.ndim >= 2 else None)
    return TensorType(dtype, batch + tuple(d for d, keep in zip(core, (a.ndim >= 2, b.ndim >= 2)) if keep))


defop("matmul", 2, _matmul_infer, lambda attrs, a, b: np.matmul(a, b), "linalg")


def _tensordot_normalize(inputs, attrs):
    a, b = inputs
    axes = attrs.get("axes", 2)
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > min(a.ndim, b.ndim):
            raise GraphValueError(f"axes={n} is out of range for ranks {a.ndim} and {b.ndim}")
        pair = (tuple(range(a.ndim - n, a.ndim)), tuple(range(n)))
    else:
        try:
            xa, xb = axes
        except (TypeError, ValueError):
            raise GraphTypeError(f"axes must be an int or a pair of axis lists, got {axes!r}") from None
        xa = (xa,) if isinstance(xa, (int, np.integer)) else tuple(xa)
        xb = (xb,) if isinstance(xb, (int, np.integer)) else tuple(xb)
        if len(xa) != len(xb):
            raise GraphValueError(f"axes {axes!r} must have the same length on both sides")
        pair = (
            tuple(int(x) % a.ndim for x in xa) if xa else (),
            tuple(int(x) % b.ndim for x in xb) if xb else (),
        )
        for x, nd in ((xa, a.ndim), (xb, b.ndim)):
            if x:
                normalize_axis(tuple(x), nd)
    return {"axes": pair}


def _tensordot_infer(inputs, attrs):
    a, b = inputs
    xa, xb = attrs["axes"]
    for i, j in zip(xa, xb):
        _check_same(a.shape[i], b.shape[j], a.shape, b.shape)
    shape = tuple(d for i, d in enumerate(a.shape) if i not in xa) + tuple(
        d for j, d in enumerate(b.shape) if j not in xb
    )
    return TensorType(result_dtype(np.dot, inputs), shape)


defop(
    "tensordot",
    2,
    _tensordot_infer,
    lambda attrs, a, b: np.asarray(np.tensordot(a, b, axes=[list(x) for x in attrs["axes"]])),
    "linalg",
    normalize=_tensordot_normalize,
)


# --- gradients --------------------------------------------------------------------------------------------------
def tensordot_grads(a, b, axes, g) -> list:
    """Cotangents of ``tensordot(a, b, axes)`` given ``g``: each is ``g`` contracted with the other operand over
    the other's free axes, then transposed back into the operand's axis order."""
    xa, xb = axes
    free_a = [i for i in range(a.ndim) if i not in xa]
    free_b = [j for j in range(b.ndim) if j not in xb]
    n_a = len(free_a)
    # g's axes are free_a then free_b
    ga = b_.ap("tensordot", g, b, axes=(tuple(range(n_a, g.ndim)), tuple(free_b)))
    pairs_b = sorted(zip(xb, xa))  # ga's trailing axes: b's remaining axes in b's order, each paired with a's
    ga_axes = free_a + [i for _, i in pairs_b]
    gb = b_.ap("tensordot", a, g, axes=(tuple(free_a), tuple(range(n_a))))
    pairs_a = sorted(zip(xa, xb))
    gb_axes = [j for _, j in pairs_a] + free_b
    return [b_.dimshuffle(ga, [ga_axes.index(i) for i in range(a.ndim)]),
            b_.dimshuffle(gb, [gb_axes.index(j) for j in range(b.ndim)])]  # fmt: skip


def _d_dot(node, g):
    a, b = node.inputs
    if a.ndim == 0 or b.ndim == 0:  # a scalar factor: dot is an elementwise product
        return [b_.unbroadcast(b_.mul(g, b), a), b_.unbroadcast(b_.mul(g, a), b)]
    # np.dot contracts a's last axis with b's second-to-last (its only one for a vector): a tensordot
    return tensordot_grads(a, b, ((a.ndim - 1,), (max(b.ndim - 2, 0),)), g)


def _d_matmul(node, g):
    # vectors are promoted to matrices as matmul does (a: 1 x k, b: k x 1), the batch axes broadcast
    a, b = node.inputs
    ma = a if a.ndim >= 2 else b_.dimshuffle(a, ("x", 0))
    mb = b if b.ndim >= 2 else b_.dimshuffle(b, (0, "x"))
    mg = g
    if a.ndim == 1:
        mg = b_.dimshuffle(mg, [*range(mg.ndim - (b.ndim >= 2)), "x", *range(mg.ndim - (b.ndim >= 2), mg.ndim)])
    if b.ndim == 1:
        mg = b_.dimshuffle(mg, [*range(mg.ndim), "x"])
    ga = b_.unbroadcast(b_.ap("matmul", mg, b_.swap_last2(mb)), ma)
    gb = b_.unbroadcast(b_.ap("matmul", b_.swap_last2(ma), mg), mb)
    if a.ndim == 1:
        ga = b_.dimshuffle(ga, (1,))
    if b.ndim == 1:
        gb = b_.dimshuffle(gb, (0,))
    return [ga, gb]


OPS["dot"].grad = _d_dot
OPS["matmul"].grad = _d_matmul
OPS["tensordot"].grad = lambda node, g: tensordot_grads(*node.inputs, node.attrs["axes"], g)
