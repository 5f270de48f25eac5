"""``sympile.emit``: the code sympile would compile for a graph, as text or object bytes, without running it.

>>> import sympile
>>> import sympile.tensor as st
>>> x = st.dvector('x')
>>> sympile.emit([x], st.exp(x), target='object')[:4]
b'\\x7fELF'
"""

from __future__ import annotations

from collections.abc import Callable

from sympile.compiler.errors import GraphValueError
from sympile.compiler.graph import Node, leaves
from sympile.compiler.pipeline import optimize as optimize_graph

from .function import Function
from .variable import as_tensor_variable


def _llvm_module(inputs: list[Node], outputs: list[Node]):
    """The optimized LLVM module holding every kernel of the graph, as the cpu backend compiles it."""
    # imported here: llvmlite's binding costs ~20 ms to load, which ``import sympile`` should not pay
    from sympile.compiler.llvm import target as llvm_target  # noqa: PLC0415
    from sympile.compiler.llvm.kernels import build_module  # noqa: PLC0415
    from sympile.runtime.cpu_backend import program_specs  # noqa: PLC0415

    module = build_module(program_specs(inputs, outputs))
    return llvm_target.optimize(llvm_target.parse_and_verify(str(module)))


def _llvm_ir(inputs: list[Node], outputs: list[Node]) -> str:
    return str(_llvm_module(inputs, outputs))


def _asm(inputs: list[Node], outputs: list[Node]) -> str:
    from sympile.compiler.llvm import target as llvm_target  # noqa: PLC0415

    return llvm_target.emit_asm(_llvm_module(inputs, outputs))


def _object(inputs: list[Node], outputs: list[Node]) -> bytes:
    from sympile.compiler.llvm import target as llvm_target  # noqa: PLC0415

    return llvm_target.emit_object(_llvm_module(inputs, outputs))


def _ptx(inputs: list[Node], outputs: list[Node], arch: str = "sm_80") -> str:
    from sympile.compiler.cuda.emit import emit_ptx  # noqa: PLC0415

    return emit_ptx(inputs, outputs, arch=arch)


#: target name -> emitter(input nodes, optimized output nodes, **options).
EMITTERS: dict[str, Callable[..., str | bytes]] = {
    "llvm-ir": _llvm_ir,
    "asm": _asm,
    "object": _object,
    "ptx": _ptx,
}


def emit(inputs, outputs, target: str = "llvm-ir", optimize: bool = True, arch: str | None = None) -> str | bytes:
    """The compiled kernels of ``inputs -> outputs``: optimized LLVM IR text (``'llvm-ir'``), host assembly
    (``'asm'``), ELF object bytes (``'object'``) or CUDA PTX text (``'ptx'``, for ``arch``, default
    ``'sm_80'``). The graph goes through the optimizer as in ``function``; ops that run through numpy have no
    kernel, so a graph of only such ops gives an empty module.

    >>> import sympile
    >>> import sympile.tensor as st
    >>> x = st.dvector('x')
    >>> 'define' in sympile.emit([x], st.exp(-x * x))
    True
    """
    emitter = EMITTERS.get(target)
    if emitter is None:
        raise ValueError(f"emit: unknown target {target!r}; available: {', '.join(sorted(EMITTERS))}")
    if arch is not None and target != "ptx":
        raise ValueError(f"emit: arch= applies to target='ptx' only, not {target!r}")
    options = {"arch": arch} if arch is not None else {}
    in_vars = Function._check_inputs(inputs)
    out_vars = [as_tensor_variable(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]
    in_nodes, exprs = [v.node for v in in_vars], [o.node for o in out_vars]
    given = {id(n) for n in in_nodes}
    missing = [n for n in leaves(exprs, "input") if id(n) not in given]
    if missing:
        shown = ", ".join(n.describe() for n in missing)
        raise GraphValueError(f"emit: missing input(s) needed to compute the outputs: {shown}")
    graph, _ = optimize_graph(in_nodes, exprs, enabled=optimize)
    return emitter(in_nodes, graph, **options)
