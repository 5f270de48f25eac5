"""The CUDA schedule of a graph (which nodes become GPU kernels) and ``emit_ptx``, the PTX of a graph.

The schedule mirrors the CPU backend's: every fused elementwise node, every elementwise node, and every
reduction in :data:`~sympile.compiler.cuda.kernels.GPU_REDUCTIONS` (with its absorbed producers) becomes a
kernel; a node whose scalar code would call something NVPTX cannot select stays on the host (numpy).

>>> from sympile.compiler.graph import input_node, make_node
>>> x = input_node("float32", (None,), name="x")
>>> ".entry" in emit_ptx([x], [make_node("exp", [x])], arch="sm_90")
True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from ..graph import Node, canonical_text, toposort
from ..llvm.kernels import KernelSpec, composite_of
from ..types import broadcast_shapes
from .kernels import GPU_REDUCTIONS, build_cuda_module, gpu_buildable, kernel_symbols
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


def cuda_kernel_spec(node: Node, name: str) -> tuple[KernelSpec, list[Node]] | None:
    """The GPU kernel for ``node``, or ``None`` when it runs on the host."""
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
    prefix = "sp" + hashlib.blake2b(sched.key.encode(), digest_size=6).hexdigest() + "_"
    for node in sched.order:
        if node.is_leaf:
            continue
        found = cuda_kernel_spec(node, f"k{len(sched.kernels)}")
        if found is None:
            sched.fallback.append(node)
            continue
        spec, reads = found
        sched.kernels.append((node, reads, replace(spec, name=prefix + spec.name)))
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


__all__ = ["Schedule", "cuda_kernel_spec", "emit_ptx", "module_ir", "schedule"]
