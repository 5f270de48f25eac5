"""The op table: every op is declared once, here or in ``compiler/ops/``, with all of its rules.

An :class:`OpDef` holds an op's argument checks (arity, attribute normalisation), its type inference and its
numpy reference implementation. Later stages add their rule to the same entry (gradient, scalar lowering), so
one op's behaviour is never spread across modules.

>>> OPS["exp"].kind
'elemwise'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import GraphTypeError

OPS: dict[str, OpDef] = {}


@dataclass
class OpDef:
    """One op's rules.

    - ``infer(inputs, attrs) -> TensorType``: raises TypeError/ValueError on bad input.
    - ``impl(attrs, *arrays) -> np.ndarray``: the numpy reference, the oracle of every backend.
    - ``normalize(inputs, attrs) -> attrs``: canonical attributes (e.g. sorted non-negative axes).
    - ``kind``: 'elemwise', 'reduce', 'shape', 'index', 'linalg', 'nn', 'create' or 'leaf'.
    - ``grad``: reverse-mode rule ``grad(node, out_grad) -> [input grads]``, or ``None`` when the op has no
      gradient (its inputs get none); filled in by ``compiler/gradients`` rules.
    - ``scalar``: for elementwise ops, a ``(name, numpy function)`` used by fusion; the backends' scalar
      lowering is registered against the op name.
    """

    name: str
    arity: int | tuple
    infer: Callable
    impl: Callable
    kind: str
    normalize: Callable = lambda inputs, attrs: attrs
    doc: str = ""
    grad: Callable | None = None
    extra: dict = field(default_factory=dict)

    def check_arity(self, n: int) -> None:
        lo, hi = (self.arity, self.arity) if isinstance(self.arity, int) else self.arity
        if n < lo or (hi is not None and n > hi):
            want = str(lo) if lo == hi else f"{lo} to {hi if hi is not None else 'any number of'}"
            raise GraphTypeError(f"{self.name} takes {want} inputs, got {n}")


def defop(name: str, arity, infer, impl, kind: str, normalize=None, doc: str = "", **extra) -> OpDef:
    """Register an op; each name may be declared only once."""
    if name in OPS:
        raise ValueError(f"op {name!r} declared twice")
    opdef = OpDef(name, arity, infer, impl, kind, normalize or (lambda inputs, attrs: attrs), doc, extra=extra)
    OPS[name] = opdef
    return opdef


def evaluate(node, values) -> np.ndarray:
    """Run ``node``'s reference implementation on concrete input values (a helper for folding and tests)."""
    out = OPS[node.op].impl(node.attrs, *values)
    return np.asarray(out)


from . import ops as _ops  # noqa: E402,F401  (fills OPS)
