"""Reading an elementwise Composite as ``alpha * P + beta * Z``: an update BLAS's gemm computes itself.

An SGD update ``W - lr*(X.T @ dz)`` is such a form of a matrix product ``P``. The CPU runtime then copies ``W``
into the output while ``W`` is still in the cache from an earlier read, and calls ``gemm`` with ``C`` = that
copy, ``alpha`` and ``beta``, instead of writing ``P`` and running a kernel that reads ``W`` and ``P`` again
(runtime/cpu_backend.py, ``_GemmUpdateStep``). ``alpha`` and ``beta`` are products of inlined constants and
scalar inputs.

>>> from sympile.compiler.fusion import fuse
>>> from sympile.compiler.graph import constant_node, input_node, make_node
>>> p, w = (input_node("float32", (None, None), name=n) for n in "pw")
>>> [update] = fuse([make_node("sub", [w, make_node("mul", [constant_node(0.5, weak=True), p])])])
>>> inner = update.attrs["inner"]
>>> [r.name for r in update.inputs], inner.describe()
(['p', 'w'], 'i1-0.5*i0')
>>> affine_form(inner, 0, (False, False))
Affine(alpha=-0.5, alpha_inputs=(), z=1, beta=1.0, beta_inputs=())
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: the composite dtypes gemm computes in
GEMM_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Affine:
    """``alpha * prod(alpha_inputs) * P + beta * prod(beta_inputs) * Z``: ``z`` is Z's input slot (``None``:
    no Z term); ``*_inputs`` are slots of scalar inputs multiplying the coefficient."""

    alpha: float
    alpha_inputs: tuple
    z: int | None
    beta: float
    beta_inputs: tuple


def affine_form(inner, product: int, scalar_inputs: tuple) -> Affine | None:
    """``inner`` (a Composite) as an :class:`Affine` form of its input ``product``, or ``None`` where it is not
    one: one dtype throughout (float32/float64; Python-number constants adopt it, as in numpy), only ``add``,
    ``sub``, ``neg`` and ``mul`` by a coefficient (of a sum, only one that scales exactly: a power of two), each
    of ``P`` and one other non-scalar input ``Z`` used once.
    ``scalar_inputs[k]``: input ``k`` holds one element (it may be a coefficient)."""
    dtype = inner.dtypes[-1]
    for k, d in enumerate(inner.dtypes):
        step = inner.steps[k - inner.n_inputs] if k >= inner.n_inputs else None
        weak = step is not None and step[0] == "constant" and dict(step[2]).get("weak")
        if d != dtype and not weak:  # (a weak constant, a Python number, computes in the other operand's dtype)
            return None
    if dtype not in GEMM_DTYPES:
        return None
    # each value: ("coef", const, slots) or ("lin", {basis slot: (const, slots)})
    values: list = []
    for k in range(inner.n_inputs):
        if k == product:
            values.append(("lin", {k: (1.0, ())}))
        elif scalar_inputs[k]:
            values.append(("coef", 1.0, (k,)))
        else:
            values.append(("lin", {k: (1.0, ())}))
    for op, args, attrs in inner.steps:
        values.append(_step(op, [values[a] for a in args], dict(attrs)))
        if values[-1] is None:
            return None
    result = values[-1]
    if result[0] != "lin" or product not in result[1] or len(result[1]) > 2:
        return None
    alpha, alpha_inputs = result[1][product]
    z = next((k for k in result[1] if k != product), None)
    beta, beta_inputs = result[1][z] if z is not None else (0.0, ())
    return Affine(alpha, alpha_inputs, z, beta, beta_inputs)


def _step(op: str, args: list, attrs: dict):
    if op == "constant":
        value = attrs["value"].value
        return ("coef", float(value), ()) if value.ndim == 0 else None
    if op == "neg":
        return _scale(args[0], ("coef", -1.0, ()))
    if op == "mul":
        a, b = args
        if a[0] == "coef" and b[0] == "coef":
            return ("coef", a[1] * b[1], a[2] + b[2])
        return _scale(b, a) if a[0] == "coef" else _scale(a, b) if b[0] == "coef" else None
    if op in ("add", "sub"):
        a, b = args
        if a[0] != "lin" or b[0] != "lin" or set(a[1]) & set(b[1]):
            return None  # a coefficient added (not a form), or one input in both terms
        if op == "sub":
            b = _scale(b, ("coef", -1.0, ()))
        return ("lin", {**a[1], **b[1]})
    return None


def _scale(form, coef):
    if form[0] == "coef":
        return ("coef", form[1] * coef[1], form[2] + coef[2])
    if len(form[1]) > 1 and not _exact_scale(coef):
        return None  # c*(W - P) is not c*W - c*P in floating point: numpy rounds the difference first
    return ("lin", {k: (c * coef[1], slots + coef[2]) for k, (c, slots) in form[1].items()})


def _exact_scale(coef) -> bool:
    """Whether multiplying by ``coef`` is exact (a constant power of two, either sign), so it may be spread over
    a sum without changing how the result rounds."""
    value, slots = coef[1], coef[2]
    return not slots and value != 0 and math.frexp(abs(value))[0] == 0.5
