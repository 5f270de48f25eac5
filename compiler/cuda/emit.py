"""The CUDA schedule of a graph (which nodes become GPU kernels) and ``emit_ptx``, the PTX of a graph.

The schedule mirrors the CPU backend's: every fused elementwise node, every elementwise node, and every
reduction in :data:`~sympile.compiler.cuda.kernels.GPU_REDUCTIONS` (with its absorbed producers) becomes a
kernel; a node whose scalar code would call something NVPTX cannot select stays on the host (numpy). 2-d (and
matrix-vector) float32/float64 ``matmul`` and ``dot`` become our matmul kernel, reading a transposed operand
(``x.T``) through its strides, so the transpose itself is not computed.

>>> from sympile.compiler.graph import input_node, make_node
>>> x = input_node("float32", (None,), name="x")
>>> ".entry" in emit_ptx([x], [make_node("exp", [x])], arch="sm_90")
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..graph import Node, canonical_text, toposort
from ..kernelspec import KernelSpec, composite_of, schedule_kernels
from ..ops.fused import Composite
from ..types import broadcast_shapes
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

    @property
    def specs(self) -> list[KernelSpec]:
        return [s for _, _, s in self.kernels]

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
    found = composite_of(node, GPU_REDUCTIONS)
    if found is None:
        return None
    inner, reads = found
    scalar = tuple(all(d == 1 for d in i.shape) for i in reads)
    if node.op not in GPU_REDUCTIONS and node.op != "fused_reduce":
        spec = KernelSpec(name, inner, scalar, node.ndim)
    else:
        reduce = node.attrs.get("reduce", node.op)
        ndim = len(broadcast_shapes(*(i.shape for i in reads)))
        axes = tuple(range(ndim)) if node.attrs["axis"] is None else tuple(node.attrs["axis"])
        if not axes or reduce not in GPU_REDUCTIONS:
            return None
        spec = KernelSpec(name, inner, scalar, ndim, reduce, axes, node.dtype)
    return (spec, reads) if gpu_buildable(spec) else None


def schedule(inputs: list[Node], outputs: list[Node]) -> Schedule:
    """Which nodes of the (optimized) graph run as GPU kernels; kernel names are unique per graph structure."""
    sched = Schedule(toposort(outputs), key=canonical_text(outputs, inputs))
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
    return sched


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
    if not sched.kernels:
        return host
    return host + to_ptx(module_ir(sched.specs), arch)


__all__ = ["MATMUL_OPS", "Schedule", "cuda_kernel_spec", "emit_ptx", "matmul_spec", "module_ir", "schedule"]
