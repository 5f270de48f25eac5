"""Constant folding through the op table's numpy references, and shapes known statically.

Folded values are strong constants (never weak): the node they replace was a computed tensor, and consumers'
dtype promotion must stay what it was. Results larger than :data:`MAX_FOLD_SIZE` elements stay computed, so a
graph does not swell with big literal arrays.
"""

from __future__ import annotations

import numpy as np

from ..graph import Node
from ..ops.inference import static_int
from ..optable import OPS
from ..rewrite import P, Rule, constant_like

MAX_FOLD_SIZE = 4096


def _foldable(node: Node) -> bool:
    return not node.is_leaf and bool(node.inputs) and all(i.op == "constant" for i in node.inputs)


def _fold(n: Node) -> Node | None:
    if n.shape and None not in n.shape and np.prod(n.shape) > MAX_FOLD_SIZE:
        return None
    values = [i.attrs["value"].value for i in n.inputs]
    # weak constants take part as Python scalars, exactly as the numpy interpreter passes them
    values = [v.item() if i.attrs.get("weak") else v for v, i in zip(values, n.inputs)]
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(OPS[n.op].impl(n.attrs, *values))
    except (ValueError, TypeError, IndexError, ZeroDivisionError, OverflowError):
        return None  # left for run time, where the error names the node
    if out.size > MAX_FOLD_SIZE or out.dtype.name != n.dtype or not n.type.accepts_shape(out.shape):
        return None
    return constant_like(out, n.dtype, n.source)


def _static_scalar(node: Node) -> bool:
    return node.ndim == 0 and node.op != "constant" and node.type.np_dtype.kind in "iub"


def _fold_static_int(n: Node) -> Node | None:
    value = static_int(n)
    return None if value is None else constant_like(value, n.dtype, n.source)


def _all_static(node: Node) -> bool:
    return None not in node.shape


RULES = [
    # op(constants...) -> constant
    Rule("constant_fold", P(None, name="n", where=_foldable), _fold),
    # shape(x) with static dims -> constant vector
    Rule(
        "static_shape",
        P("shape", P.var("x", where=_all_static), name="n"),
        lambda n, x: constant_like(np.array(x.shape, dtype=np.int64), n.dtype, n.source),
    ),
    # x.shape[k] with static dim k (and arithmetic on such) -> constant scalar
    Rule("static_int", P(None, name="n", where=_static_scalar), _fold_static_int),
]
