"""The CUDA schedule of a graph (which nodes become GPU kernels) and ``emit_ptx``, the PTX of a graph.

The schedule mirrors the CPU backend's: every fused elementwise node, every elementwise node, and every
reduction in :data:`~sympile.compiler.cuda.kernels.GPU_REDUCTIONS` (with its absorbed producers) becomes a
kernel; a node whose scalar code would call something NVPTX cannot select stays on the host (numpy). 2-d (and
matrix-vector) float32/float64 ``matmul`` and ``dot`` become our matmul kernel, reading a transposed operand
(``x.T``) through its strides, so the transpose itself is not computed. ``softmax``, ``log_softmax`` and
``logsumexp`` are first expanded (:func:`expand_for_gpu`) into max and sum reductions and fused elementwise
kernels; a ``sum_to`` whose summed axes are known only at run time gets sum kernels (:func:`sum_to_specs`).

>>> from sympile.compiler.graph import input_node, make_node
>>> x = input_node("float32", (None,), name="x")
>>> ".entry" in emit_ptx([x], [make_node("exp", [x])], arch="sm_90")
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..fusion import fuse
from ..graph import Node, canonical_text, constant_node, make_node, rebuild, toposort
from ..kernelspec import KernelSpec, kernel_prefix, node_kernel_spec, schedule_kernels
from ..ops.fused import Composite
from ..ops.inference import static_int_vector
from .kernels import GPU_REDUCTIONS, MatmulSpec, build_cuda_module, gpu_buildable, kernel_symbols
from .ptx import to_ptx


@dataclass
class Schedule:
    """``kernels``: ``(node, reads, spec)`` for each node computed on the GPU, in graph order; ``fallback``: the
    nodes computed by numpy on the host; ``key``: the canonical graph text the kernel names are hashed from."""

    order: list
    kernels: list = field(default_factory=list)
    fallback: list = field(default_factory=list)
    key: str = ""
    #: the outputs of the scheduled graph (row ops expanded by :func:`expand_for_gpu`): the runtime reads these
    outputs: list = field(default_factory=list)
    #: ids of ``max`` nodes (a logsumexp's shift) whose reduction over zero elements is -inf, not numpy's error
    empty_max_is_neg_inf: frozenset = frozenset()
    #: id of an expanded softmax/log_softmax's ``max`` node -> that softmax node: errors name what the user wrote
    expanded_from: dict = field(default_factory=dict)

    #: per host ``sum_to`` node (by id) whose summed axes are known only at run time: ``{r: spec}``, a sum over
    #: the last ``r`` of ``r`` reduced axes (the kernels take any axes, permuted last by the runtime)
    sum_to: dict = field(default_factory=dict)

    @property
    def specs(self) -> list[KernelSpec]:
        return [s for _, _, s in self.kernels] + [s for specs in self.sum_to.values() for s in specs.values()]

    @property
    def symbols(self) -> list[str]:
        return [sym for s in self.specs for sym in kernel_symbols(s)]


#: the ops the matmul kernel computes (for operands of rank 1 or 2, of one float dtype)
MATMUL_OPS = ("matmul", "dot")
MATMUL_DTYPES = ("float32", "float64")


def matmul_spec(node: Node, name: str) -> tuple[MatmulSpec | KernelSpec, list[Node]] | None:
    """The GPU kernel for a ``matmul``/``dot`` node of 2-d or 1-d float operands of the result's dtype, or
    ``None``. An operand that is a 2-d transpose (``dimshuffle`` ``(1, 0)``) is read through swapped strides.
    Reads follow the operands' order.

    - matrix @ matrix: the matmul kernel, 4 x 4 outputs per thread;
    - a product with a vector where the contraction axis is the matrix's contiguous one (``A @ v``, ``v @ B.T``,
      ``u @ v``): a sum reduction of ``i0*i1`` over the last axis (a block per row, threads reading along it:
      coalesced; a full reduction for ``u @ v`` splits across blocks);
    - the others (``v @ B``, ``A.T @ v``): the matmul kernel with all threads of a block along the vector of
      outputs, which is then contiguous in the matrix.

    >>> from sympile.compiler.graph import input_node, make_node
    >>> a, b = input_node("float32", (None, None)), input_node("float32", (None, None))
    >>> spec, reads = matmul_spec(make_node("matmul", [make_node("dimshuffle", [a], new_order=(1, 0)), b]), "k")
    >>> spec.transposed, reads == [a, b]
    ((True, False), True)
    """
    if node.op not in MATMUL_OPS or len(node.inputs) != 2 or node.dtype not in MATMUL_DTYPES:
        return None
    if any(x.dtype != node.dtype or not 1 <= x.ndim <= 2 for x in node.inputs):
        return None
    reads, transposed = [], []
    for x in node.inputs:
        t = x.op == "dimshuffle" and tuple(x.attrs["new_order"]) == (1, 0)
        reads.append(x.inputs[0] if t else x)
        transposed.append(t)
    (a, b), (ta, tb), dt = node.inputs, transposed, node.dtype
    if a.ndim == 2 and b.ndim == 2:
        return MatmulSpec(name, dt, tuple(transposed)), reads
    if (a.ndim == 2 and not ta) or (b.ndim == 2 and tb) or a.ndim == b.ndim == 1:
        # every read has the contraction axis last: sum(i0*i1) over it (broadcasting the vector)
        inner = Composite(2, (("mul", (0, 1), ()),), (dt, dt, dt))
        ndim = max(r.ndim for r in reads)
        return KernelSpec(name, inner, (False, False), ndim, "sum", (ndim - 1,), dt), reads
    layout = (4, 1, 1) if b.ndim == 1 else (1, 4, 256)
    return MatmulSpec(name, dt, tuple(transposed), layout), reads


def cuda_kernel_spec(node: Node, name: str) -> tuple[KernelSpec | MatmulSpec, list[Node]] | None:
    """The GPU kernel for ``node``, or ``None`` when it runs on the host."""
    if node.op in MATMUL_OPS:
        return matmul_spec(node, name)
    found = node_kernel_spec(node, name, GPU_REDUCTIONS)
    return found if found is not None and gpu_buildable(found[0]) else None


#: ops that run as several GPU kernels after :func:`expand_for_gpu` (for these input dtypes), not on the host
EXPANDED_OPS = ("softmax", "log_softmax", "logsumexp", "var", "std")
EXPANDED_DTYPES = ("float32", "float64")


def _expand(node: Node) -> tuple[Node, list[Node]] | None:
    """The stable decomposition of a softmax, log_softmax or logsumexp node into max, sum and elementwise nodes
    (each with ``node``'s source line), and the logsumexp's shift ``max`` nodes; ``None`` to keep the node.

    The same formulas as the numpy references (ops/nn.py, ops/reductions.py), so results agree to rounding:
    ``m = max(x)``; softmax ``exp(x - m) / sum(exp(x - m))``; log_softmax ``(x - m) - log(sum(exp(x - m)))``;
    logsumexp ``log(sum(exp(x - m'))) + m'`` with ``m' = where(isinf(m), 0, m)`` (numpy's ``isfinite``: a nan
    ``m`` gives nan either way). ``exp(x - m)`` is written twice so that fusion makes one ``fused_reduce`` for
    the sum and one fused kernel for the result, recomputing the exponentials instead of storing them.
    """
    if node.op not in EXPANDED_OPS or node.inputs[0].dtype not in EXPANDED_DTYPES or node.inputs[0].ndim == 0:
        return None
    (x,) = node.inputs
    source = node.source

    def ap(op: str, *inputs, **attrs) -> Node:
        args = [i if isinstance(i, Node) else constant_node(i, weak=True) for i in inputs]
        return make_node(op, args, source=source, **attrs)

    if node.op in ("var", "std"):
        new, maxes = _variance(node, ap), []
    elif node.op == "logsumexp":
        axis, keepdims = node.attrs["axis"], node.attrs["keepdims"]
        axes = tuple(range(x.ndim)) if axis is None else tuple(axis)
        # reduced axes that are leading ones need no keepdims: the reduced value broadcasts against x as is
        leading = axes == tuple(range(len(axes)))
        m = ap("max", x, axis=axis, keepdims=keepdims or not leading)

        def shift(m: Node) -> Node:
            return ap("where", ap("isinf", m), 0, m)

        s = ap("sum", ap("exp", ap("sub", x, shift(m))), axis=axis, keepdims=keepdims)
        m_out = m
        if m.ndim != s.ndim:  # keepdims form -> the result's rank: a view on the device (no kernel, no copy)
            m_out = ap("dimshuffle", m, new_order=tuple(d for d in range(x.ndim) if d not in axes))
        new, maxes = ap("add", ap("log", s), shift(m_out)), [m]
    else:
        axis = node.attrs["axis"]
        axis = None if axis is None else (axis,)
        m = ap("max", x, axis=axis, keepdims=True)
        s = ap("sum", ap("exp", ap("sub", x, m)), axis=axis, keepdims=True)
        if node.op == "softmax":
            new = ap("true_div", ap("exp", ap("sub", x, m)), s)
        else:
            new = ap("sub", ap("sub", x, m), ap("log", s))
        maxes = []
    if new.dtype != node.dtype or new.ndim != node.ndim:
        return None  # (not expected: the formulas keep the float dtype)
    new.name = node.name
    return new, maxes


def _variance(node: Node, ap) -> Node:
    """numpy's var (std: its square root): ``d = x - mean(x)``, ``sum(d * d) / max(n - ddof, 0)`` with ``n`` the
    elements reduced per result (a constant where the reduced dimensions are static, else from ``x``'s shape on
    the host: a few integers), as ``numpy/_core/_methods.py`` computes it."""
    (x,) = node.inputs
    axis, keepdims, ddof = node.attrs["axis"], node.attrs["keepdims"], node.attrs.get("ddof", 0)
    axes = tuple(range(x.ndim)) if axis is None else tuple(axis)
    d = ap("sub", x, ap("mean", x, axis=axis, keepdims=True))
    total = ap("sum", ap("mul", d, d), axis=axis, keepdims=keepdims)
    dims = [x.shape[a] for a in axes]
    if None not in dims:
        count = constant_node(np.asarray(max(math.prod(dims) - ddof, 0), dtype=x.dtype))
    else:
        n = constant_node(np.ones((), dtype=x.dtype))
        for a in axes:
            size = x.shape[a] if x.shape[a] is not None else ap("getitem", ap("shape", x), index=(("int", a),))
            n = ap("mul", n, ap("cast", size, dtype=x.dtype) if isinstance(size, Node) else size)
        count = ap("maximum", ap("sub", n, ddof), 0)
    new = ap("true_div", total, count)
    return ap("sqrt", new) if node.op == "std" else new


def expand_for_gpu(outputs: list[Node], origins: dict | None = None) -> tuple[list[Node], frozenset]:
    """``outputs`` with every float32/float64 ``softmax``, ``log_softmax`` and ``logsumexp`` expanded into
    nodes the GPU runs (max and sum reductions, elementwise ops), then fused; and the ids of the logsumexp
    shifts' ``max`` nodes (see :class:`Schedule`). Outputs without such nodes come back as they are.
    ``origins``, if given, gets ``id(max node) -> softmax node`` for each expanded softmax and log_softmax.

    >>> from sympile.compiler.graph import input_node, make_node
    >>> x = input_node("float32", (None, None), name="x")
    >>> [y], _ = expand_for_gpu([make_node("softmax", [x], axis=-1)])
    >>> y.op, y.attrs["inner"].describe(), [n.op for n in y.inputs]
    ('fused', 'exp(i0-i1)/i2', ['input', 'max', 'fused_reduce'])
    """
    memo: dict[int, Node] = {}
    maxes: list[Node] = []
    changed = False
    for node in toposort(outputs):
        inputs = [memo[id(i)] for i in node.inputs]
        if not all(a is b for a, b in zip(inputs, node.inputs)):
            node_ = rebuild(node, inputs)
        else:
            node_ = node
        found = _expand(node_)  # (after its inputs: a softmax of a softmax expands both)
        if found is not None:
            (node_, more), changed = found, True
            maxes += more
            if origins is not None and node.op in ("softmax", "log_softmax"):
                origins.update((id(n), node) for n in toposort([node_]) if n.op == "max")
        memo[id(node)] = node_
    if not changed:
        return list(outputs), frozenset()
    expanded = [memo[id(o)] for o in outputs]
    expanded = fuse(expanded)
    live = {id(n) for n in toposort(expanded)}
    return expanded, frozenset(id(m) for m in maxes if id(m) in live)


def schedule(inputs: list[Node], outputs: list[Node]) -> Schedule:
    """Which nodes of the (optimized) graph run as GPU kernels; kernel names are unique per graph structure.

    Row ops are expanded first (:func:`expand_for_gpu`): ``sched.outputs`` are the outputs of the graph that is
    scheduled, which the runtime evaluates in place of ``outputs``.
    """
    origins: dict = {}
    outputs, empty_max = expand_for_gpu(outputs, origins)
    sched = Schedule(toposort(outputs), key=canonical_text(outputs, inputs), outputs=outputs)
    sched.empty_max_is_neg_inf = empty_max
    sched.expanded_from = origins
    sched.kernels, sched.fallback = schedule_kernels(sched.order, cuda_kernel_spec, sched.key)
    # only what the outputs need through the kernels' reads: a transpose read by the matmul kernel is not computed
    reads_of = {id(node): reads for node, reads, _ in sched.kernels}
    live: set = set()
    stack = list(outputs)
    while stack:
        node = stack.pop()
        if id(node) not in live:
            live.add(id(node))
            stack.extend(reads_of.get(id(node), node.inputs))
    sched.order = [n for n in sched.order if id(n) in live]
    sched.fallback = [n for n in sched.fallback if id(n) in live]
    sched.kernels = [k for k in sched.kernels if id(k[0]) in live]
    prefix = kernel_prefix(sched.key)
    for j, node in enumerate(n for n in sched.fallback if n.op == "sum_to"):
        specs = sum_to_specs(node, f"{prefix}t{j}")
        if specs:
            sched.sum_to[id(node)] = specs
    return sched


#: the dtypes whose ``sum_to`` runs as a GPU sum (numpy sums in the value's own dtype: for these, ours too)
SUM_TO_DTYPES = ("float32", "float64")


def sum_to_specs(node: Node, name: str) -> dict[int, KernelSpec]:
    """Sum kernels for a ``sum_to`` node (a gradient's unbroadcast where static shapes cannot tell which axes were
    broadcast): ``{r: spec}`` for every count ``r`` of axes it may sum at run time (leading axes, and those where
    the target may be 1). The reduction kernels take the axes' sizes and strides as arguments, kept axes first,
    so one spec per count serves any set of axes. Empty for other dtypes (the node stays a host node).

    >>> from sympile.compiler.graph import input_node, make_node
    >>> x, b = input_node("float32", (None, None)), input_node("float32", (None,))
    >>> sorted(sum_to_specs(make_node("sum_to", [x, make_node("shape", [b])]), "t0"))
    [1, 2]
    """
    x, shp = node.inputs
    if x.dtype not in SUM_TO_DTYPES or x.ndim == 0 or shp.shape[0] is None:
        return {}
    lead = x.ndim - shp.shape[0]
    static = static_int_vector(shp) or [None] * shp.shape[0]
    most = lead + sum(1 for d, xd in zip(static, x.shape[lead:]) if d in (None, 1) and xd != 1)
    identity = Composite(1, (), (x.dtype,))
    return {
        r: KernelSpec(f"{name}r{r}", identity, (False,), x.ndim, "sum", tuple(range(x.ndim - r, x.ndim)), x.dtype)
        for r in range(1, most + 1)
    }


def module_ir(specs: list[KernelSpec], mode: str = "gpu") -> str:
    """The (unoptimized) IR text of the kernels of ``specs``."""
    return str(build_cuda_module(specs, mode))


def emit_ptx(inputs: list[Node], outputs: list[Node], arch: str = "sm_90") -> str:
    """PTX text of every GPU kernel of the graph ``outputs`` of ``inputs`` (nodes, optimized or not), for
    ``arch``. Nodes that run on the host are listed in a comment at the top.

    >>> from sympile.compiler.graph import input_node, make_node
    >>> x = input_node("float64", (None, None), name="x")
    >>> text = emit_ptx([x], [make_node("sum", [x], axis=(1,))], arch="sm_80")
    >>> text.count(".entry")
    2
    """
    sched = schedule(inputs, outputs)
    host = "".join(f"// host (numpy): {n.op} {n.type.short()}\n" for n in sched.fallback)
    if not sched.specs:
        return host
    return host + to_ptx(module_ir(sched.specs), arch)


__all__ = [
    "EXPANDED_OPS",
    "MATMUL_OPS",
    "Schedule",
    "cuda_kernel_spec",
    "emit_ptx",
    "expand_for_gpu",
    "matmul_spec",
    "module_ir",
    "schedule",
]
