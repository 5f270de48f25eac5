"""The numpy reference interpreter: runs each node's reference implementation in topological order.

It is the oracle every native backend is tested against, and the fallback for ops a backend cannot lower.
"""

from __future__ import annotations

import numpy as np

from sympile.compiler.errors import GraphTypeError, GraphValueError, with_context
from sympile.compiler.graph import Node, toposort
from sympile.compiler.optable import OPS
from sympile.compiler.types import shape_str


def leaf_value(node: Node):
    """A constant's runtime value: weak constants (Python scalars) stay Python scalars, as numpy needs."""
    value = node.attrs["value"].value
    return value.item() if node.attrs.get("weak") else value


class NumpyProgram:
    """Compiled form of a graph for the numpy backend: the node order and where each value comes from.

    ``run(inputs, shared)`` takes the function inputs' arrays (in order) and the shared values (in the order of
    ``shared_nodes``) and returns the outputs' arrays.
    """

    def __init__(self, inputs: list[Node], outputs: list[Node]):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.order = toposort(outputs)
        self.shared_nodes = [n for n in self.order if n.op == "shared"]
        self.kernels = []

    def run(self, inputs: list, shared: list) -> list:
        env = {id(n): v for n, v in zip(self.inputs, inputs)}
        env.update((id(n), v) for n, v in zip(self.shared_nodes, shared))
        with np.errstate(all="ignore"):  # numpy's values (inf, nan, 0 for int division by zero), no warnings
            for node in self.order:
                if id(node) in env:
                    continue
                if node.op == "constant":
                    env[id(node)] = leaf_value(node)
                    continue
                if node.op == "input":
                    raise GraphValueError(f"no value for input {node.describe()}")
                args = [env[id(i)] for i in node.inputs]
                env[id(node)] = run_node(node, args)
        return [np.asarray(env[id(o)]) for o in self.outputs]


def run_node(node: Node, args: list) -> np.ndarray:
    """Run one node's reference implementation; errors name the node, its input shapes and its source."""
    try:
        out = np.asarray(OPS[node.op].impl(node.attrs, *args))
    except (ValueError, IndexError, TypeError, ZeroDivisionError, OverflowError) as exc:
        shapes = ", ".join(shape_str(np.shape(a)) for a in args)
        raise with_context(exc, f"{node.describe()} failed on inputs of shapes {shapes}") from None
    if out.dtype.name != node.dtype:
        raise GraphTypeError(f"internal: {node.describe()} produced {out.dtype.name}")
    if not node.type.accepts_shape(out.shape):
        raise GraphValueError(
            f"{node.describe()} produced shape {shape_str(out.shape)}, expected {shape_str(node.shape)}"
        )
    return out


def broadcast_or_raise(node: Node, shapes) -> tuple:
    """numpy's broadcast of run-time ``shapes``, or the ValueError the interpreter raises for ``node``."""
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        listed, shown = ", ".join(shape_str(s) for s in shapes), " ".join(shape_str(s) for s in shapes)
        # the wording of run_node around numpy's own message, so every backend fails alike
        raise GraphValueError(
            f"{node.describe()} failed on inputs of shapes {listed}: "
            f"operands could not be broadcast together with shapes {shown}"
        ) from None
