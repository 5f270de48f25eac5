"""``sympile.tensor``: the tensor API with Theano/PyTensor names and numpy semantics.

>>> import sympile.tensor as st
>>> x = st.dvector('x')
>>> y = st.exp(-x ** 2) * st.sin(x)
>>> y.type
TensorType(float64, (?,))
"""

from __future__ import annotations

import builtins
from types import SimpleNamespace

import numpy as np

from sympile.compiler.errors import GraphTypeError, GraphValueError
from sympile.compiler.graph import constant_node, user_source_line
from sympile.compiler.ops.elementwise import ELEMWISE
from sympile.compiler.ops.inference import normalize_axis
from sympile.compiler.types import as_dtype

from .constructors import *  # noqa: F401,F403 - scalar, dvector, fmatrices, tensor, ...
from .constructors import CONSTRUCTORS, tensor
from .indexing import inc_subtensor, set_subtensor
from .variable import SharedVariable, TensorVariable, apply, as_tensor_variable

as_tensor = as_tensor_variable


def constant(x, name=None, dtype=None) -> TensorVariable:
    """A constant tensor with ``x``'s dtype (not weak: ``constant(2.0)`` is a float64 tensor)."""
    arr = np.asarray(x, dtype=dtype)
    as_dtype(arr.dtype)
    return TensorVariable(constant_node(arr, name=name))


# --- elementwise -----------------------------------------------------------------------------------------------
def _elemwise(name: str, arity: int):
    def fn(*args):
        if len(args) != arity:
            raise TypeError(f"{name} takes {arity} argument{'s' if arity > 1 else ''}, got {len(args)}")
        return apply(name, *args)

    fn.__name__ = name
    ref = ELEMWISE[name][0]
    fn.__doc__ = f"Elementwise ``{name}``, as numpy's ``{getattr(ref, '__name__', name)}`` (broadcasting)."
    return fn


for _name, (_ref, _arity) in ELEMWISE.items():
    globals()[_name] = _elemwise(_name, _arity)

# numpy and Theano spellings of the same ops
power = pow = globals()["pow"]  # noqa: A001
switch = globals()["where"]
true_divide = divide = globals()["true_div"]
floor_divide = int_div = globals()["floor_div"]
remainder = globals()["mod"]
absolute = abs_ = globals()["abs"]  # noqa: A001
negative = globals()["neg"]
square = globals()["sqr"]
subtract = globals()["sub"]
multiply = globals()["mul"]
minimum = globals()["minimum"]
maximum = globals()["maximum"]
bitwise_and = globals()["and_"]
bitwise_or = globals()["or_"]
bitwise_xor = globals()["xor"]
bitwise_not = globals()["invert"]
expit = globals()["sigmoid"]
round_half_to_even = globals()["round"]


def cast(x, dtype) -> TensorVariable:
    """``x`` converted to ``dtype`` as numpy's ``astype`` does (float -> int truncates toward zero)."""
    x = as_tensor_variable(x)
    if as_dtype(dtype).name == x.dtype:
        return x
    return apply("cast", x, dtype=as_dtype(dtype).name)


# replaces the generated clip so that a bound may be None, as in numpy
def clip(x, a_min, a_max) -> TensorVariable:
    """``x`` limited to [a_min, a_max], as numpy's ``clip``; a bound of ``None`` is not applied."""
    if a_min is None and a_max is None:
        return as_tensor_variable(x)
    if a_min is None:
        return apply("minimum", x, a_max)
    if a_max is None:
        return apply("maximum", x, a_min)
    return apply("clip", x, a_min, a_max)


def relu(x, alpha=0) -> TensorVariable:
    """max(x, 0), or ``where(x > 0, x, alpha * x)`` for a leaky ``alpha``."""
    if alpha == 0:
        return maximum(x, 0)
    x = as_tensor_variable(x)
    return apply("where", x > 0, x, alpha * x)


# --- reductions ------------------------------------------------------------------------------------------------
def _reduce(op, x, axis, keepdims, dtype=None, **attrs):
    x = as_tensor_variable(x)
    if dtype is not None:  # numpy's dtype= argument: accumulate in and return that dtype
        attrs["dtype"] = as_dtype(dtype).name
    return apply(op, x, axis=axis, keepdims=keepdims, **attrs)


def sum(x, axis=None, keepdims=False, dtype=None):  # noqa: A001
    """Sum over ``axis`` (int, tuple or None), numpy's result dtype (int8 sums to int64)."""
    return _reduce("sum", x, axis, keepdims, dtype)


def prod(x, axis=None, keepdims=False, dtype=None):
    """Product over ``axis``."""
    return _reduce("prod", x, axis, keepdims, dtype)


def mean(x, axis=None, keepdims=False, dtype=None):
    """Arithmetic mean over ``axis`` (integers give float64, as numpy)."""
    return _reduce("mean", x, axis, keepdims, dtype)


def var(x, axis=None, ddof=0, keepdims=False):
    """Variance over ``axis`` with ``ddof`` delta degrees of freedom."""
    return _reduce("var", x, axis, keepdims, ddof=ddof)


def std(x, axis=None, ddof=0, keepdims=False):
    """Standard deviation over ``axis``."""
    return _reduce("std", x, axis, keepdims, ddof=ddof)


def max(x, axis=None, keepdims=False):  # noqa: A001
    """Maximum over ``axis`` (nan propagates, as numpy)."""
    return _reduce("max", x, axis, keepdims)


def min(x, axis=None, keepdims=False):  # noqa: A001
    """Minimum over ``axis``."""
    return _reduce("min", x, axis, keepdims)


def argmax(x, axis=None, keepdims=False):
    """Index of the maximum along ``axis`` (an int or None: the flattened index)."""
    return _reduce("argmax", x, axis, keepdims)


def argmin(x, axis=None, keepdims=False):
    """Index of the minimum along ``axis``."""
    return _reduce("argmin", x, axis, keepdims)


def all(x, axis=None, keepdims=False):  # noqa: A001
    """Whether all elements along ``axis`` are true."""
    return _reduce("all", x, axis, keepdims)


def any(x, axis=None, keepdims=False):  # noqa: A001
    """Whether any element along ``axis`` is true."""
    return _reduce("any", x, axis, keepdims)


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) over ``axis``, computed without overflow."""
    return _reduce("logsumexp", x, axis, keepdims)


# --- neural-network helpers ------------------------------------------------------------------------------------
def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``, computed stably."""
    return apply("softmax", x, axis=axis)


def log_softmax(x, axis=-1):
    """log(softmax(x)) along ``axis``, computed stably."""
    return apply("log_softmax", x, axis=axis)


# --- linear algebra --------------------------------------------------------------------------------------------
def dot(a, b):
    """numpy's ``dot``: inner product of vectors, matrix product, sum over the last/second-to-last axes."""
    return apply("dot", a, b)


def matmul(a, b):
    """numpy's ``matmul`` (``@``): matrix product with batch broadcasting."""
    return apply("matmul", a, b)


def outer(a, b):
    """Outer product of the flattened inputs, as numpy's ``outer``."""
    a, b = flatten(as_tensor_variable(a)), flatten(as_tensor_variable(b))
    return apply("mul", a.dimshuffle(0, "x"), b.dimshuffle("x", 0))


def tensordot(a, b, axes=2):
    """numpy's ``tensordot``: sum products over ``axes`` (an int or a pair of axis lists)."""
    return apply("tensordot", a, b, axes=axes)


# --- shapes ----------------------------------------------------------------------------------------------------
def shape(x) -> TensorVariable:
    """The symbolic shape of ``x`` (an int64 vector)."""
    return as_tensor_variable(x).shape


def _dim(x: TensorVariable, i: int):
    d = x.static_shape[i]
    return d if d is not None else x.shape[i]


def _shape_entries(shp) -> list:
    """A shape argument (int, tuple of ints and scalars, or an int vector) as a list of ints/scalar vars."""
    if isinstance(shp, TensorVariable):
        if shp.ndim == 0:
            return [shp]
        if shp.ndim != 1 or shp.static_shape[0] is None:
            raise GraphTypeError(f"a shape must be a vector of static length, got {shp.type.short()}")
        return [shp[i] for i in range(shp.static_shape[0])]
    if isinstance(shp, (int, np.integer)):
        return [int(shp)]
    entries = []
    for d in shp:
        if isinstance(d, TensorVariable):
            if d.ndim != 0 or np.dtype(d.dtype).kind not in "iu":
                raise GraphTypeError(f"shape entries must be integer scalars, got {d.type.short()}")
            entries.append(d)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, bool):
            entries.append(int(d))
        else:
            raise GraphTypeError(f"shape entries must be integers, got {d!r}")
    return entries


def _shape_vector(shp) -> TensorVariable:
    if isinstance(shp, TensorVariable) and shp.ndim == 1:
        return cast(shp, "int64")
    entries = _shape_entries(shp)
    if builtins.all(isinstance(e, int) for e in entries):
        return constant(np.array(entries, dtype=np.int64))
    return stack([cast(e, "int64") if isinstance(e, TensorVariable) else constant(np.int64(e)) for e in entries])


def reshape(x, newshape, ndim=None):
    """``x`` with a new shape (one entry may be -1); entries may be symbolic, e.g. ``x.shape[0]``."""
    x = as_tensor_variable(x)
    vec = _shape_vector(newshape)
    if ndim is not None and vec.static_shape[0] != ndim:
        raise GraphValueError(f"newshape has {vec.static_shape[0]} entries but ndim={ndim}")
    return apply("reshape", x, vec)


def flatten(x, ndim=1):
    """Keep the first ``ndim - 1`` dimensions and flatten the rest (Theano's ``flatten(ndim)``)."""
    x = as_tensor_variable(x)
    if not 1 <= ndim <= builtins.max(x.ndim, 1):
        raise GraphValueError(f"flatten: ndim={ndim} is not in [1, {builtins.max(x.ndim, 1)}]")
    if x.ndim == ndim:
        return x
    return reshape(x, [_dim(x, i) for i in range(ndim - 1)] + [-1])


def dimshuffle(x, *pattern):
    """Reorder axes; ``'x'`` inserts a broadcastable axis, omitted axes (of size 1) are dropped.

    >>> import sympile.tensor as st
    >>> st.dvector('v').dimshuffle('x', 0).ndim
    2
    """
    if len(pattern) == 1 and isinstance(pattern[0], (list, tuple)):
        pattern = tuple(pattern[0])
    return apply("dimshuffle", x, new_order=pattern)


def transpose(x, axes=None, *more_axes):
    """Permute the axes (reverse them when ``axes`` is None); ``x.transpose(1, 0)`` works as in numpy."""
    x = as_tensor_variable(x)
    if more_axes:
        axes = (axes, *more_axes)
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    axes = tuple(normalize_axis(a, x.ndim)[0] for a in axes)  # each in range (numpy's AxisError otherwise)
    if sorted(axes) != list(range(x.ndim)):
        raise GraphValueError(
            f"transpose({x.type.short()}): axes {axes} are not a permutation of the {x.ndim} axes"
            f" (at {user_source_line()})"
        )
    return dimshuffle(x, axes) if axes != tuple(range(x.ndim)) else x


def expand_dims(x, axis):
    """Insert axes of length 1 at the positions ``axis`` (int or tuple) of the result."""
    x = as_tensor_variable(x)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    axes = normalize_axis(axes, x.ndim + len(axes))  # positions in the result: in range, not repeated
    out_ndim = x.ndim + len(axes)
    order, source = [], iter(range(x.ndim))
    for i in range(out_ndim):
        order.append("x" if i in axes else next(source))
    return dimshuffle(x, order)


def squeeze(x, axis=None):
    """Drop axes of length 1 (``axis=None``: the axes whose static size is 1)."""
    x = as_tensor_variable(x)
    if axis is None:
        drop = [i for i, d in enumerate(x.static_shape) if d == 1]
    else:
        drop = normalize_axis(axis, x.ndim)
    return dimshuffle(x, [i for i in range(x.ndim) if i not in drop])


def concatenate(tensors, axis=0):
    """Join tensors along an existing axis."""
    if not tensors:
        raise GraphValueError("need at least one tensor to concatenate")
    return apply("concatenate", *tensors, axis=axis)


def join(axis, *tensors):
    """Theano's ``join(axis, *tensors)``: same as ``concatenate(tensors, axis)``."""
    return concatenate(tensors, axis)


def stack(tensors, axis=0):
    """Join tensors of equal shape along a new axis."""
    if not tensors:
        raise GraphValueError("need at least one tensor to stack")
    return apply("stack", *tensors, axis=axis)


def alloc(value, *shape):
    """A new tensor of ``shape`` filled with ``value`` (broadcast)."""
    dims = [as_tensor_variable(d if isinstance(d, TensorVariable) else np.int64(d)) for d in shape]
    return apply("alloc", value, *dims)


def full(shape, fill_value, dtype=None):
    """A tensor of ``shape`` filled with ``fill_value`` (dtype as numpy's ``full``)."""
    if isinstance(fill_value, TensorVariable):
        value = fill_value if dtype is None else cast(fill_value, dtype)
    else:
        value = constant(np.asarray(fill_value, dtype=dtype))
    return alloc(value, *_shape_entries(shape))


def zeros(shape, dtype=None):
    """A tensor of zeros (float64 unless ``dtype``)."""
    return full(shape, 0, dtype or "float64")


def ones(shape, dtype=None):
    """A tensor of ones (float64 unless ``dtype``)."""
    return full(shape, 1, dtype or "float64")


def _like(x, value, dtype):
    x = as_tensor_variable(x)
    return full([_dim(x, i) for i in range(x.ndim)], value, dtype or x.dtype)


def zeros_like(x, dtype=None):
    """Zeros with ``x``'s shape and dtype."""
    return _like(x, 0, dtype)


def ones_like(x, dtype=None):
    """Ones with ``x``'s shape and dtype."""
    return _like(x, 1, dtype)


def full_like(x, fill_value, dtype=None):
    """``fill_value`` with ``x``'s shape and dtype."""
    return _like(x, fill_value, dtype)


def arange(start, stop=None, step=1, dtype=None):
    """Evenly spaced values in [start, stop), as numpy's ``arange``; bounds may be symbolic scalars."""
    if stop is None:
        start, stop = 0, start
    args = [as_tensor_variable(v) for v in (start, stop, step)]
    if dtype is None:
        kinds = {np.dtype(a.dtype).kind for a in args}
        dtype = "float64" if "f" in kinds else "int64"
    return apply("arange", *args, dtype=as_dtype(dtype).name)


nnet = SimpleNamespace(
    sigmoid=globals()["sigmoid"],
    softplus=globals()["softplus"],
    softmax=softmax,
    log_softmax=log_softmax,
    relu=relu,
    logsumexp=logsumexp,
)

__all__ = [
    *CONSTRUCTORS,
    *ELEMWISE,
    "tensor", "constant", "as_tensor_variable", "as_tensor", "TensorVariable", "SharedVariable", "cast",
    "power", "switch", "true_divide", "divide", "floor_divide", "int_div", "remainder", "absolute", "abs_",
    "negative", "square", "subtract", "multiply", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not",
    "expit", "round_half_to_even", "relu", "sum", "prod", "mean", "var", "std", "max", "min", "argmax",
    "argmin", "all", "any", "logsumexp", "softmax", "log_softmax", "dot", "matmul", "outer", "tensordot",
    "shape", "reshape", "flatten", "dimshuffle", "transpose", "expand_dims", "squeeze", "concatenate", "join",
    "stack", "alloc", "full", "zeros", "ones", "zeros_like", "ones_like", "full_like", "arange",
    "set_subtensor", "inc_subtensor", "nnet",
]  # fmt: skip
