"""What a kernel computes, independent of any code generator: :class:`KernelSpec` and :func:`composite_of`.

The CPU (``compiler/llvm``) and CUDA (``compiler/cuda``) backends schedule a graph into kernels with these. This
module imports no llvmlite, so a program whose object code comes from the disk cache is scheduled and loaded
without loading LLVM (about 25 ms of start-up).

>>> from sympile.compiler.graph import input_node, make_node
>>> x = input_node("float64", (None,), name="x")
>>> inner, reads = composite_of(make_node("exp", [x]))
>>> inner.describe(), reads == [x]
('exp(i0)', True)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from .graph import Node
from .ops.elementwise import LOWER
from .ops.fused import Composite
from .optable import OPS
from .types import broadcast_shapes

#: row kernels (compiler/llvm/rows.py): op -> whether the result has the input's shape
ROW_OPS = {"softmax": True, "log_softmax": True, "logsumexp": False, "var": False, "std": False}
#: the element dtypes the row kernels take (others run through numpy)
ROW_DTYPES = ("float32", "float64")
#: reductions with an ``_o`` entry (whole rows combined into the output) when over leading axes
OUTER_REDUCTIONS = ("sum", "mean", "prod", "max", "min")


@dataclass(frozen=True)
class KernelSpec:
    """One elementwise kernel: its name, the Composite, which inputs are statically scalar, the output rank."""

    name: str
    inner: object  # compiler.ops.fused.Composite
    scalar_inputs: tuple
    ndim: int
    reduce: str | None = None  # sum, prod, max, min, mean, all or any: reduce the composite's values
    axes: tuple = ()  # the reduced axes (of the ndim-rank iteration space)
    out_dtype: str = ""  # a reduction's result dtype
    ddof: float = 0  # var/std's delta degrees of freedom (row kernels, rows.py)

    @property
    def n_inputs(self) -> int:
        return self.inner.n_inputs

    @property
    def symbols(self) -> list[str]:
        """The exported entry points."""
        if self.reduce in ROW_OPS:
            return [f"{self.name}_row"]
        if self.reduce:
            return [f"{self.name}_r"] + ([f"{self.name}_o"] if has_outer_entry(self) else [])
        return [f"{self.name}_c"] + ([f"{self.name}_s"] if self.ndim else [])


def accumulator_dtype(reduce: str, out_dtype: str, in_dtype: str) -> str:
    """What a reduction accumulates in: its result dtype, but float32 for float16 (as numpy's half loops);
    argmax/argmin keep the best value so far, in the input's dtype.

    >>> accumulator_dtype("sum", "float16", "float16")
    'float32'
    """
    if reduce in ("all", "any"):
        return "bool"
    if reduce in ("argmax", "argmin"):
        return in_dtype
    return "float32" if out_dtype == "float16" else out_dtype


def has_outer_entry(spec: KernelSpec) -> bool:
    """Whether ``spec`` gets the ``{name}_o`` entry: it accumulates in the output itself, so only where the
    accumulator dtype is the result dtype."""
    if spec.reduce not in OUTER_REDUCTIONS:
        return False
    return accumulator_dtype(spec.reduce, spec.out_dtype, spec.inner.dtype) == spec.out_dtype


def lowerable(inner) -> bool:
    """Whether every step of a Composite has a scalar lowering."""
    return all(op == "constant" or op in LOWER for op, _, _ in inner.steps)


def composite_of(node: Node, reductions=()) -> tuple[Composite, list[Node]] | None:
    """The Composite a node computes and the nodes it reads, or ``None`` if it has no LLVM lowering.

    A single elementwise node is a one-step composite (scalar constants inlined, as fusion does); a plain
    reduction among ``reductions`` (those the backend lowers) reduces the identity composite of its input.
    """
    if node.op in ("fused", "fused_reduce"):
        inner = node.attrs["inner"]
        return (inner, list(node.inputs)) if lowerable(inner) else None
    if node.op in reductions:
        (x,) = node.inputs
        return Composite(1, (), (x.dtype,)), [x]
    if OPS[node.op].kind != "elemwise":
        return None
    inputs = [i for i in dict.fromkeys(node.inputs) if not (i.op == "constant" and i.ndim == 0)]
    slot = {id(i): k for k, i in enumerate(inputs)}
    steps, dtypes = [], [i.dtype for i in inputs]
    for i in node.inputs:
        if id(i) not in slot:
            slot[id(i)] = len(inputs) + len(steps)
            steps.append(("constant", (), (("value", i.attrs["value"]), ("weak", bool(i.attrs.get("weak"))))))
            dtypes.append(i.dtype)
    steps.append((node.op, tuple(slot[id(i)] for i in node.inputs), tuple(sorted(node.attrs.items()))))
    inner = Composite(len(inputs), tuple(steps), tuple(dtypes) + (node.dtype,))
    return (inner, inputs) if lowerable(inner) else None


def node_kernel_spec(node: Node, name: str, reductions) -> tuple[KernelSpec, list[Node]] | None:
    """The kernel computing ``node`` (elementwise, fused, or a reduction among ``reductions``, those the backend
    lowers, with its fused producers) and the nodes it reads; ``None`` where the node has no such kernel.

    >>> from sympile.compiler.graph import input_node, make_node
    >>> x = input_node("float64", (None, 3), name="x")
    >>> spec, reads = node_kernel_spec(make_node("sum", [x], axis=(1,)), "k0", ("sum",))
    >>> spec.reduce, spec.axes, spec.ndim
    ('sum', (1,), 2)
    """
    found = composite_of(node, reductions)
    if found is None:
        return None
    inner, reads = found
    scalar = tuple(all(d == 1 for d in i.shape) for i in reads)  # statically one element: read once
    if node.op not in reductions and node.op != "fused_reduce":
        return KernelSpec(name, inner, scalar, node.ndim), reads
    reduce = node.attrs.get("reduce", node.op)
    ndim = len(broadcast_shapes(*(i.shape for i in reads)))
    axes = tuple(range(ndim)) if node.attrs["axis"] is None else tuple(node.attrs["axis"])
    if not axes or reduce not in reductions:
        return None  # nothing reduced (numpy's reference is a copy), or a reduction the backend does not lower
    return KernelSpec(name, inner, scalar, ndim, reduce, axes, node.dtype), reads


def schedule_kernels(order: list[Node], spec_of, key_text) -> tuple[list[tuple[Node, list[Node], KernelSpec]], list]:
    """Split the non-leaf nodes of ``order`` into kernels and the rest (computed by numpy): the schedule loop of
    every backend. ``spec_of(node, name)`` gives a backend's ``(spec, reads)`` or ``None``; kernels are named
    ``k0, k1, ...`` behind a prefix hashed from ``key_text`` (the canonical graph text, or a function returning it:
    it is only computed where there are kernels), so names are unique per graph structure. Returns
    ``([(node, reads, spec), ...], fallback_nodes)``.

    >>> from sympile.compiler.graph import input_node, make_node
    >>> x = input_node("float64", (None,), name="x")
    >>> y = make_node("exp", [x])
    >>> spec_of = lambda node, name: (KernelSpec(name, composite_of(node)[0], (False,), 1), [x])
    >>> kernels, rest = schedule_kernels([x, y], spec_of, "graph text")
    >>> kernels[0][2].name[-3:], rest
    ('_k0', [])
    """
    planned, fallback = [], []
    for node in order:
        if node.is_leaf:
            continue
        found = spec_of(node, f"k{len(planned)}")
        if found is None:
            fallback.append(node)
            continue
        spec, reads = found
        planned.append((node, reads, spec))
    if planned:
        prefix = kernel_prefix(key_text() if callable(key_text) else key_text)
        planned = [(node, reads, replace(spec, name=prefix + spec.name)) for node, reads, spec in planned]
    return planned, fallback


def kernel_prefix(key_text: str) -> str:
    """The prefix of a graph's kernel names: a hash of its canonical text, so names are unique per structure.

    >>> kernel_prefix("graph text")[:2], len(kernel_prefix("graph text"))
    ('sp', 15)
    """
    return "sp" + hashlib.blake2b(key_text.encode(), digest_size=6).hexdigest() + "_"
