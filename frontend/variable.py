"""Symbolic tensor variables: what users hold and combine with Python operators.

A :class:`TensorVariable` wraps one immutable compiler node. Wrappers of the same node are the same variable
(equal and with equal hashes), so variables can be dict keys (``givens``, ``updates``). As in Theano, ``==``
compares identity; use :func:`sympile.tensor.eq` for elementwise equality.

>>> import sympile.tensor as st
>>> x = st.dvector('x')
>>> (x * 2 + 1).dtype
'float64'
"""

from __future__ import annotations

import weakref

import numpy as np

from sympile.compiler.errors import GraphTypeError
from sympile.compiler.graph import Node, constant_node, make_node
from sympile.compiler.types import TensorType, as_dtype

# node -> the storage of the shared variable it refers to; lives exactly as long as the node
SHARED_STORAGE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class TensorVariable:
    """A symbolic tensor: a dtype, a rank, a static shape (some dims unknown) and how it is computed."""

    __slots__ = ("node", "_eval_cache")  # _eval_cache: functions compiled by eval(), dying with this variable
    __array_ufunc__ = None  # numpy arrays defer to our reflected operators: ndarray * x -> x.__rmul__

    def __init__(self, node: Node):
        self.node = node

    # --- identity -------------------------------------------------------------------------------------------
    def __eq__(self, other):
        return isinstance(other, TensorVariable) and other.node is self.node

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(self.node)

    def __bool__(self):
        raise TypeError(
            f"the truth value of a symbolic variable is unknown until it is computed ({self.node.describe()}); "
            "use sympile.tensor.where / switch for conditionals"
        )

    # --- static information ---------------------------------------------------------------------------------
    @property
    def type(self) -> TensorType:
        return self.node.type

    @property
    def dtype(self) -> str:
        return self.node.dtype

    @property
    def ndim(self) -> int:
        return self.node.ndim

    @property
    def broadcastable(self) -> tuple:
        return self.node.type.broadcastable

    @property
    def static_shape(self) -> tuple:
        """The shape known at build time, ``None`` for unknown dimensions."""
        return self.node.shape

    @property
    def name(self):
        return self.node.name

    @name.setter
    def name(self, value):
        self.node.name = value

    @property
    def shape(self) -> TensorVariable:
        """The symbolic shape: an int64 vector; ``x.shape[0]`` is a symbolic scalar."""
        return apply("shape", self)

    @property
    def size(self) -> TensorVariable:
        from . import tensor

        return tensor.prod(self.shape)

    @property
    def T(self) -> TensorVariable:
        return self.transpose()

    def __len__(self):
        n = self.node.shape[0] if self.ndim else None
        if n is None:
            raise TypeError(f"len() of a tensor whose first dimension is not known statically: {self.node.describe()}")
        return n

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self):
        label = self.node.name or self.node.op
        return f"{type(self).__name__}({label}, {self.node.type.short()})"

    # --- operators ------------------------------------------------------------------------------------------
    def __add__(self, other):
        return apply("add", self, other)

    def __radd__(self, other):
        return apply("add", other, self)

    def __sub__(self, other):
        return apply("sub", self, other)

    def __rsub__(self, other):
        return apply("sub", other, self)

    def __mul__(self, other):
        return apply("mul", self, other)

    def __rmul__(self, other):
        return apply("mul", other, self)

    def __truediv__(self, other):
        return apply("true_div", self, other)

    def __rtruediv__(self, other):
        return apply("true_div", other, self)

    def __floordiv__(self, other):
        return apply("floor_div", self, other)

    def __rfloordiv__(self, other):
        return apply("floor_div", other, self)

    def __mod__(self, other):
        return apply("mod", self, other)

    def __rmod__(self, other):
        return apply("mod", other, self)

    def __pow__(self, other):
        return apply("pow", self, other)

    def __rpow__(self, other):
        return apply("pow", other, self)

    def __matmul__(self, other):
        return apply("matmul", self, other)

    def __rmatmul__(self, other):
        return apply("matmul", other, self)

    def __neg__(self):
        return apply("neg", self)

    def __pos__(self):
        return self

    def __abs__(self):
        return apply("abs", self)

    def __invert__(self):
        return apply("invert", self)

    def __and__(self, other):
        return apply("and_", self, other)

    def __rand__(self, other):
        return apply("and_", other, self)

    def __or__(self, other):
        return apply("or_", self, other)

    def __ror__(self, other):
        return apply("or_", other, self)

    def __xor__(self, other):
        return apply("xor", self, other)

    def __rxor__(self, other):
        return apply("xor", other, self)

    def __lt__(self, other):
        return apply("lt", self, other)

    def __le__(self, other):
        return apply("le", self, other)

    def __gt__(self, other):
        return apply("gt", self, other)

    def __ge__(self, other):
        return apply("ge", self, other)

    def __getitem__(self, key):
        from .indexing import getitem

        return getitem(self, key)

    # --- methods (the functions of sympile.tensor) ----------------------------------------------------------
    def _t(name):  # noqa: N805 - builds a method forwarding to sympile.tensor.<name>
        def method(self, *args, **kwargs):
            from . import tensor

            return getattr(tensor, name)(self, *args, **kwargs)

        method.__name__ = name
        method.__doc__ = f"Same as ``sympile.tensor.{name}(self, ...)``."
        return method

    sum = _t("sum")
    prod = _t("prod")
    mean = _t("mean")
    var = _t("var")
    std = _t("std")
    max = _t("max")
    min = _t("min")
    argmax = _t("argmax")
    argmin = _t("argmin")
    all = _t("all")
    any = _t("any")
    reshape = _t("reshape")
    flatten = _t("flatten")
    dimshuffle = _t("dimshuffle")
    transpose = _t("transpose")
    squeeze = _t("squeeze")
    astype = _t("cast")
    dot = _t("dot")
    clip = _t("clip")
    round = _t("round")
    exp = _t("exp")
    log = _t("log")
    sqrt = _t("sqrt")
    del _t

    def eval(self, inputs_to_values=None):
        """Compute this variable's value; ``inputs_to_values`` maps input variables to values.

        >>> import sympile.tensor as st
        >>> x = st.dscalar('x')
        >>> float((x + 1).eval({x: 2.0}))
        3.0
        """
        from .function import eval_variable

        return eval_variable(self, inputs_to_values or {})


class SharedVariable(TensorVariable):
    """A variable with a value that persists between calls; functions read it and ``updates`` change it."""

    __slots__ = ()

    @property
    def storage(self) -> SharedStorage:
        return SHARED_STORAGE[self.node]

    def get_value(self, borrow: bool = False) -> np.ndarray:
        """The current value: a copy unless ``borrow=True`` (then the internal array; do not resize it). A value
        kept on a GPU by a CUDA function is copied back to the host (always a fresh array)."""
        raw = self.storage.raw
        if not isinstance(raw, (np.ndarray, np.generic)):
            return raw.get()
        return raw if borrow else raw.copy()

    def set_value(self, value, borrow: bool = False) -> None:
        """Replace the value: copied unless ``borrow=True``. dtype must be castable, rank must match."""
        from .arguments import convert_argument

        label = f"shared variable {self.name!r}" if self.name else "shared variable"
        arr = convert_argument(value, self.node.type, label)
        self.storage.value = arr if (borrow and arr is value) else np.array(arr, copy=True)

    @property
    def value(self) -> np.ndarray:
        return self.get_value()


class SharedStorage:
    """Where a shared variable's value lives; compiled functions hold these, not the variables.

    ``raw`` is the stored value: a host array, or a device array (an object with ``.get()`` returning one, the
    CUDA backend's) that a CUDA function keeps in GPU memory between calls. ``value`` is always on the host."""

    __slots__ = ("raw", "__weakref__")

    def __init__(self, value: np.ndarray):
        self.raw = value

    @property
    def value(self) -> np.ndarray:
        raw = self.raw
        return raw if isinstance(raw, (np.ndarray, np.generic)) else raw.get()

    @value.setter
    def value(self, value) -> None:
        self.raw = value


def wrap(node: Node) -> TensorVariable:
    """The user-facing variable for ``node`` (a SharedVariable for shared references)."""
    return SharedVariable(node) if node.op == "shared" else TensorVariable(node)


def as_tensor_variable(x, name=None, dtype=None) -> TensorVariable:
    """A variable for ``x``: variables pass through; numbers and array-likes become constants.

    Python scalars become *weak* constants that adopt the other operand's dtype as numpy's NEP 50 says
    (a float32 tensor times 2.0 stays float32); numpy arrays and scalars keep their dtype.

    >>> as_tensor_variable([1, 2, 3]).dtype
    'int64'
    """
    if isinstance(x, TensorVariable):
        if dtype is not None and as_dtype(dtype).name != x.dtype:
            raise GraphTypeError(f"expected dtype {as_dtype(dtype).name}, got {x.dtype} ({x.node.describe()})")
        return x
    if isinstance(x, Node):
        return wrap(x)
    weak = type(x) in (bool, int, float) and dtype is None
    if isinstance(x, (str, bytes)) or x is None:
        raise GraphTypeError(f"cannot make a tensor from {type(x).__name__} {x!r}; expected numbers or arrays")
    if isinstance(x, (list, tuple)) and any(isinstance(e, TensorVariable) for e in _flat(x)):
        from .tensor import stack

        return stack([as_tensor_variable(e) for e in x])
    try:
        arr = np.asarray(x, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise GraphTypeError(f"cannot make a tensor from {x!r}: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise GraphTypeError(f"cannot make a tensor from {type(x).__name__} of dtype {arr.dtype}")
    if weak and type(x) is int and arr.dtype != np.int64:
        raise GraphTypeError(f"Python integer {x} does not fit in int64")
    return TensorVariable(constant_node(arr, weak=weak, name=name))


def _flat(x):
    for e in x:
        if isinstance(e, (list, tuple)):
            yield from _flat(e)
        else:
            yield e


def apply(op: str, *args, **attrs) -> TensorVariable:
    """Build ``op(args..., **attrs)`` from variables or constants and wrap the result."""
    nodes = [as_tensor_variable(a).node for a in args]
    return TensorVariable(make_node(op, nodes, **attrs))
