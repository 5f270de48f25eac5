"""Fused ops: an elementwise subgraph as one node (``fused``), optionally reduced (``fused_reduce``).

The inner expression is a :class:`Composite`: plain, immutable, hashable data that a code generator walks step
by step to emit one loop. Its numpy reference evaluates the steps with the ops' own numpy references, so a
fused node computes exactly what the unfused nodes did (values and dtypes).

>>> c = Composite(2, (("exp", (0,), ()), ("mul", (2, 1), ())), ("float64", "float64", "float64", "float64"))
>>> c.describe()
'exp(i0)*i1'
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ..errors import GraphTypeError, with_context
from ..exprtext import ATOM, op_text
from ..optable import OPS, defop
from ..types import TensorType, broadcast_shapes, shape_str
from .inference import normalize_axis
from .reductions import reduced_shape


@dataclass(frozen=True)
class Composite:
    """An elementwise expression over ``n_inputs`` inputs, as a list of SSA steps.

    - ``steps``: ``(op, args, attrs)`` each; ``args`` index the values ``i0 .. i{n-1}`` (the fused node's
      inputs) followed by the steps' results; ``attrs`` is a tuple of ``(name, value)`` pairs. The step
      ``("constant", (), (("value", ConstValue), ("weak", bool)))`` is an inlined scalar constant; a weak one
      is a Python number that adopts the other operand's dtype, as in numpy.
    - ``dtypes``: the dtype of every value (inputs, then steps); the last step is the result.
    - ``sources``: the user's source line of each step's original node, for run-time errors; not part of the
      expression's identity (two equal expressions built on different lines are the same composite).
    """

    n_inputs: int
    steps: tuple
    dtypes: tuple
    sources: tuple = field(default=(), compare=False)

    @property
    def dtype(self) -> str:
        return self.dtypes[-1]

    def describe(self) -> str:
        """The expression as infix text over ``i0, i1, ...``: ``exp(i0)*sin(i1)+log1p(i2*i2)``."""
        texts: list[tuple[str, int]] = [(f"i{k}", ATOM) for k in range(self.n_inputs)]
        for op, args, attrs in self.steps:
            if op == "constant":
                value = dict(attrs)["value"].value
                item = value.item() if value.ndim == 0 else None
                texts.append((repr(item), ATOM if item is None or item >= 0 else 6))
            else:
                texts.append(op_text(op, [texts[a] for a in args], dict(attrs) or None))
        return texts[-1][0]

    def evaluate(self, *arrays) -> np.ndarray:
        """The numpy value: each step through its op's numpy reference (the interpreter's semantics)."""
        env = list(arrays)
        for k, (op, args, attrs) in enumerate(self.steps):
            if op == "constant":
                fields = dict(attrs)
                value = fields["value"].value
                env.append(value.item() if fields["weak"] else value)
                continue
            values = [env[a] for a in args]
            try:
                env.append(np.asarray(OPS[op].impl(dict(attrs), *values)))
            except (ValueError, IndexError, TypeError, ZeroDivisionError, OverflowError) as exc:
                shapes = ", ".join(shape_str(np.shape(v)) for v in values)
                where = self.sources[k] if k < len(self.sources) else "<unknown>"
                raise with_context(exc, f"{op} (created at {where}) on inputs of shapes {shapes}") from None
        return np.asarray(env[-1])

    def __repr__(self) -> str:
        return f"Composite<{self.describe()} :: {','.join(self.dtypes)}>"


def _check_inputs(inputs, inner: Composite) -> None:
    if not isinstance(inner, Composite) or inner.n_inputs != len(inputs):
        raise GraphTypeError(f"a fused node needs a Composite over {len(inputs)} inputs, got {inner!r}")
    for k, (node, dtype) in enumerate(zip(inputs, inner.dtypes)):
        if node.dtype != dtype:
            raise GraphTypeError(f"fused input i{k}: expected dtype {dtype}, got {node.type.short()}")


def _fused_infer(inputs, attrs):
    _check_inputs(inputs, attrs["inner"])
    return TensorType(attrs["inner"].dtype, broadcast_shapes(*(i.shape for i in inputs)))


# fused(*inputs, inner=Composite): an elementwise subgraph (with broadcasting) computed as one loop
defop("fused", (1, None), _fused_infer, lambda attrs, *xs: attrs["inner"].evaluate(*xs), "fused")

#: reductions that may absorb their elementwise producers
FUSIBLE_REDUCTIONS = ("sum", "prod", "max", "min", "mean", "all", "any")


@functools.cache
def _reduced_dtype(reduce: str, dtype: str) -> str:
    return np.asarray(OPS[reduce].impl({"axis": None, "keepdims": False}, np.ones((1,), dtype))).dtype.name


def _fused_reduce_normalize(inputs, attrs):
    if attrs.get("reduce") not in FUSIBLE_REDUCTIONS:
        raise GraphTypeError(f"fused_reduce: reduce must be one of {FUSIBLE_REDUCTIONS}, got {attrs.get('reduce')!r}")
    ndim = len(broadcast_shapes(*(i.shape for i in inputs)))
    return {
        "inner": attrs["inner"],
        "reduce": attrs["reduce"],
        "axis": normalize_axis(attrs.get("axis"), ndim),
        "keepdims": bool(attrs.get("keepdims", False)),
    }


def _fused_reduce_infer(inputs, attrs):
    _check_inputs(inputs, attrs["inner"])
    shape = broadcast_shapes(*(i.shape for i in inputs))
    dtype = _reduced_dtype(attrs["reduce"], attrs["inner"].dtype)
    return TensorType(dtype, reduced_shape(shape, attrs["axis"], attrs["keepdims"]))


def _fused_reduce_impl(attrs, *xs):
    inner = attrs["inner"].evaluate(*xs)
    return OPS[attrs["reduce"]].impl({"axis": attrs["axis"], "keepdims": attrs["keepdims"]}, inner)


# fused_reduce(*inputs, inner=Composite, reduce=op, axis=..., keepdims=...): reduce(inner(...)) in one loop
defop(
    "fused_reduce",
    (1, None),
    _fused_reduce_infer,
    _fused_reduce_impl,
    "fused",
    normalize=_fused_reduce_normalize,
)
