"""Ops that exist for differentiation: ``disconnected_grad``, ``zero_grad`` (identities forward) and ``sum_to``.

- ``disconnected_grad(x)``: x; no gradient flows through it (its input is disconnected, a "stop gradient").
- ``zero_grad(x)``: x; the gradient through it is zero (the input stays connected).
- ``sum_to(g, shape)``: ``g`` summed over the axes along which a tensor of ``shape`` was broadcast to ``g``'s
  shape; the run-time half of undoing a broadcast when static shapes cannot tell (see ``build.unbroadcast``).
"""

from __future__ import annotations

import numpy as np

from ..build import DISCONNECTED, NO_GRAD, broadcast_like
from ..errors import GraphTypeError, GraphValueError
from ..optable import defop
from ..types import TensorType
from .inference import static_int_vector


def _identity(x):
    return np.asarray(x)


def _same_type(inputs, attrs):
    return inputs[0].type


# identities forward, declared with kind 'shape' (like dimshuffle: no arithmetic) so that elementwise fusion and
# scalar lowering leave them alone; the optimizer may simply drop them once gradients have been taken
defop("disconnected_grad", 1, _same_type, lambda attrs, x: _identity(x), "shape").grad = DISCONNECTED
defop("zero_grad", 1, _same_type, lambda attrs, x: _identity(x), "shape").grad = NO_GRAD


def sum_to(x, shape) -> np.ndarray:
    """Sum ``x`` to ``shape``: over leading axes, and over axes where ``shape`` has 1 and ``x`` does not.

    >>> sum_to(np.ones((2, 3)), (1, 3)).tolist()
    [[2.0, 2.0, 2.0]]
    """
    x = np.asarray(x)
    shape = tuple(int(d) for d in shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and x.shape[lead + i] != 1)
    out = np.sum(x, axis=axes, keepdims=True, dtype=x.dtype).reshape(shape)
    if out.shape != shape:
        raise GraphValueError(f"cannot sum a tensor of shape {x.shape} to shape {shape}")
    return out


def _sum_to_infer(inputs, attrs):
    x, shp = inputs
    if shp.ndim != 1 or shp.shape[0] is None or shp.type.np_dtype.kind not in "iu":
        raise GraphTypeError(f"sum_to needs a shape vector of static length, got {shp.type.short()}")
    if shp.shape[0] > x.ndim:
        raise GraphValueError(f"sum_to cannot raise rank {x.ndim} to {shp.shape[0]}")
    dims = static_int_vector(shp) or [None] * shp.shape[0]
    return TensorType(x.dtype, tuple(dims))


def _sum_to_grad(node, g):
    # the adjoint of summing over broadcast axes is broadcasting back to the input's shape
    return [broadcast_like(g, node.inputs[0]), None]


defop("sum_to", 2, _sum_to_infer, lambda attrs, x, shp: sum_to(x, shp), "reduce").grad = _sum_to_grad
