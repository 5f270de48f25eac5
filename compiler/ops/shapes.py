"""Shape ops: shape, reshape, dimshuffle (transpose/expand_dims/squeeze), concatenate, stack, alloc, arange.

Shape arguments are graph inputs (integer scalars or vectors), so ``x.reshape((x.shape[0], -1))`` works; the
static shape is inferred wherever the entries are known at build time.
"""

from __future__ import annotations

import math

import numpy as np

from .. import build as b_
from ..build import DISCONNECTED, NO_GRAD
from ..errors import GraphTypeError, GraphValueError
from ..graph import Node, const_value
from ..optable import OPS, defop
from ..types import TensorType, shape_str
from .inference import check_int_scalar, normalize_axis, result_dtype, static_int, static_int_vector

# shape(x): the int64 vector of x's dimensions
defop(
    "shape",
    1,
    lambda inputs, attrs: TensorType("int64", (inputs[0].ndim,)),
    lambda attrs, x: np.array(np.shape(x), dtype=np.int64),
    "shape",
)


def _reshape_infer(inputs, attrs):
    x, shp = inputs
    if shp.ndim != 1 or shp.type.np_dtype.kind not in "iu" or shp.shape[0] is None:
        raise GraphTypeError(f"reshape needs a shape vector of static length, got {shp.type.short()}")
    dims = static_int_vector(shp)
    if dims.count(-1) > 1:
        raise GraphValueError("can only specify one unknown dimension (-1)")
    if any(d is not None and d < -1 for d in dims):
        raise GraphValueError(f"negative dimension in reshape target {dims}")
    size = math.prod(d for d in x.shape) if None not in x.shape else None
    known = [d for d in dims if d is not None and d != -1]
    if -1 in dims:
        if size is not None and None not in dims:
            rest = math.prod(known)
            if rest == 0 or size % rest:
                raise GraphValueError(f"cannot reshape a tensor of shape {shape_str(x.shape)} into {dims}")
            dims = [size // rest if d == -1 else d for d in dims]
        else:
            dims = [None if d == -1 else d for d in dims]
    elif size is not None and None not in dims and math.prod(dims) != size:
        raise GraphValueError(f"cannot reshape a tensor of shape {shape_str(x.shape)} into {tuple(dims)}")
    return TensorType(x.dtype, tuple(dims))


def _reshape_impl(attrs, x, shp):
    return np.reshape(x, tuple(int(d) for d in shp))


defop("reshape", 2, _reshape_infer, _reshape_impl, "shape")


def _dimshuffle_normalize(inputs, attrs):
    order = tuple("x" if d == "x" else int(d) for d in attrs["new_order"])
    ndim = inputs[0].ndim
    kept = [d for d in order if d != "x"]
    if any(not 0 <= d < ndim for d in kept) or len(set(kept)) != len(kept):
        raise GraphValueError(f"dimshuffle order {order} is not valid for a tensor of rank {ndim}")
    for d in range(ndim):
        if d not in kept and inputs[0].shape[d] not in (1, None):
            raise GraphValueError(
                f"cannot drop dimension {d} of size {inputs[0].shape[d]} (only dimensions of size 1 can be dropped)"
            )
    return {"new_order": order}


def _dimshuffle_infer(inputs, attrs):
    shape = inputs[0].shape
    return TensorType(inputs[0].dtype, tuple(1 if d == "x" else shape[d] for d in attrs["new_order"]))


def dimshuffle_impl(attrs, x):
    x = np.asarray(x)
    order = attrs["new_order"]
    kept = [d for d in order if d != "x"]
    dropped = tuple(d for d in range(x.ndim) if d not in kept)
    if dropped:
        x = np.squeeze(x, axis=dropped)  # raises if a dropped dimension is not 1
        kept = [d - sum(1 for e in dropped if e < d) for d in kept]
    x = np.transpose(x, kept)
    inserted = tuple(i for i, d in enumerate(order) if d == "x")
    return np.expand_dims(x, inserted) if inserted else x


# dimshuffle(x, new_order): a permutation of x's axes, with 'x' inserting a broadcastable axis and missing
# axes (which must have size 1) dropped. transpose, expand_dims, squeeze and .T are all dimshuffles.
defop("dimshuffle", 1, _dimshuffle_infer, dimshuffle_impl, "shape", normalize=_dimshuffle_normalize)


def _join_normalize(extra):
    def normalize(inputs, attrs):
        ndim = inputs[0].ndim + extra
        if any(i.ndim != inputs[0].ndim for i in inputs):
            ranks = ", ".join(str(i.ndim) for i in inputs)
            raise GraphValueError(f"all inputs must have the same rank, got ranks {ranks}")
        if ndim == 0:
            raise GraphValueError("zero-dimensional tensors cannot be concatenated")
        return {"axis": normalize_axis(attrs.get("axis", 0), ndim)[0]}

    return normalize


def _concatenate(*xs):
    return np.concatenate(xs)


def _stack(*xs):
    return np.stack(xs)


def _concat_infer(inputs, attrs):
    axis = attrs["axis"]
    dtype = result_dtype(_concatenate, inputs, ndim0=False)
    shape = []
    for d in range(inputs[0].ndim):
        dims = [i.shape[d] for i in inputs]
        if d == axis:
            shape.append(None if None in dims else sum(dims))
            continue
        known = {x for x in dims if x is not None}
        if len(known) > 1:
            shown = ", ".join(shape_str(i.shape) for i in inputs)
            raise GraphValueError(f"shapes {shown} differ outside the concatenation axis {axis}")
        shape.append(known.pop() if known else None)
    return TensorType(dtype, tuple(shape))


def _stack_infer(inputs, attrs):
    dtype = result_dtype(_stack, inputs, ndim0=False)
    shape = []
    for d in range(inputs[0].ndim):
        known = {i.shape[d] for i in inputs if i.shape[d] is not None}
        if len(known) > 1:
            shown = ", ".join(shape_str(i.shape) for i in inputs)
            raise GraphValueError(f"all inputs of stack must have the same shape, got {shown}")
        shape.append(known.pop() if known else None)
    shape.insert(attrs["axis"], len(inputs))
    return TensorType(dtype, tuple(shape))


defop(
    "concatenate",
    (1, None),
    _concat_infer,
    lambda attrs, *xs: np.concatenate(xs, axis=attrs["axis"]),
    "shape",
    normalize=_join_normalize(0),
)
defop(
    "stack",
    (1, None),
    _stack_infer,
    lambda attrs, *xs: np.stack(xs, axis=attrs["axis"]),
    "shape",
    normalize=_join_normalize(1),
)


def _alloc_infer(inputs, attrs):
    value, *dims = inputs
    for i, d in enumerate(dims):
        check_int_scalar(d, f"dimension {i} of alloc")
    shape = tuple(static_int(d) for d in dims)
    if any(d is not None and d < 0 for d in shape):
        raise GraphValueError(f"negative dimension in {shape}")
    if value.ndim > len(shape):
        raise GraphValueError(f"value of rank {value.ndim} cannot fill a tensor of rank {len(shape)}")
    for v, d in zip(value.shape[::-1], shape[::-1]):
        if v not in (1, None) and d is not None and v != d:
            raise GraphValueError(f"value of shape {shape_str(value.shape)} cannot fill shape {shape_str(shape)}")
    return TensorType(value.dtype, shape)


def _alloc_impl(attrs, value, *dims):
    value = np.asarray(value)
    out = np.empty(tuple(int(d) for d in dims), dtype=value.dtype)
    out[...] = value
    return out


# alloc(value, *dims): a new tensor of shape dims filled with value (broadcast); zeros/ones/full use it
defop("alloc", (1, None), _alloc_infer, _alloc_impl, "create")


def _arange_infer(inputs, attrs):
    for node, what in zip(inputs, ("start", "stop", "step")):
        if node.ndim != 0:
            raise GraphTypeError(f"arange {what} must be a scalar, got {node.type.short()}")
    if const_value(inputs[2]) is not None and const_value(inputs[2]) == 0:
        raise GraphValueError("arange step must not be zero")
    values = [static_int(i) if i.type.np_dtype.kind in "iub" else None for i in inputs]
    length = None
    if None not in values:
        start, stop, step = values
        if step == 0:
            raise GraphValueError("arange step must not be zero")
        length = len(range(start, stop, step))
    return TensorType(attrs["dtype"], (length,))


def _arange_impl(attrs, start, stop, step):
    # weak constants arrive as Python scalars, other bounds as 0-d arrays: np.arange wants plain numbers
    return np.arange(*(np.asarray(v).item() for v in (start, stop, step)), dtype=attrs["dtype"])


defop("arange", 3, _arange_infer, _arange_impl, "create")


# --- gradients: rule(node, g) -> one gradient per input (None: none) -------------------------------------------
def _d_dimshuffle(node, g):
    # the inverse shuffle: put each input axis back from where it went; dropped axes (size 1) come back as 'x'
    order = node.attrs["new_order"]
    return [b_.dimshuffle(g, [order.index(d) if d in order else "x" for d in range(node.inputs[0].ndim)])]


def _d_concatenate(node, g):
    axis = node.attrs["axis"]
    grads, start = [], 0
    for x in node.inputs:
        size = x.shape[axis] if x.shape[axis] is not None else b_.shape_entry(x, axis)
        stop = b_.add(start, size) if isinstance(start, Node) or isinstance(size, Node) else start + size
        grads.append(_slice_axis(g, axis, start, stop))
        start = stop
    return grads


def _slice_axis(x, axis, start, stop):
    """``x[..., start:stop, ...]`` along ``axis``; bounds are ints or integer scalar nodes."""
    refs = [b for b in (start, stop) if isinstance(b, Node)]
    bounds = [("in", refs.index(b)) if isinstance(b, Node) else b for b in (start, stop)]
    entry = ("slice", bounds[0], bounds[1], None)
    index = (("slice", None, None, None),) * axis + (entry,)
    return b_.ap("getitem", x, *refs, index=index)


def _d_stack(node, g):
    axis = node.attrs["axis"]
    return [b_.ap("getitem", g, index=(("slice", None, None, None),) * axis + (("int", i),))
            for i in range(len(node.inputs))]  # fmt: skip


OPS["shape"].grad = DISCONNECTED  # a shape does not depend on the values
OPS["reshape"].grad = lambda node, g: [b_.ap("reshape", g, b_.shape_of(node.inputs[0])), None]
OPS["dimshuffle"].grad = _d_dimshuffle
OPS["concatenate"].grad = _d_concatenate
OPS["stack"].grad = _d_stack
OPS["alloc"].grad = lambda node, g: [b_.unbroadcast(g, node.inputs[0])] + [None] * (len(node.inputs) - 1)
OPS["arange"].grad = NO_GRAD
