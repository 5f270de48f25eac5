"""Graph printing: ``debugprint`` (text tree) and ``to_dot``/``pydotprint`` (Graphviz DOT).

>>> import sympile.tensor as st
>>> x = st.dvector('x')
>>> print(debugprint(st.exp(x) + x, file='str'))
add [id A] <float64[?]>
 ├─ exp [id B] <float64[?]>
 │  └─ x [id C] <float64[?]>
 └─ x [id C]
"""

from __future__ import annotations

import os
import sys

from sympile.compiler.graph import Node, toposort

from .function import Function
from .variable import TensorVariable

_HIDDEN_ATTRS = ("uid", "value", "weak", "inner")  # a fused node's inner expression is shown after


def _roots(obj) -> list[tuple[str, Node]]:
    """(label, node) for each root to print: a variable, a list of them, or a compiled function's graph."""
    if isinstance(obj, Function):
        n = obj.n_outputs
        roots = [("", node) for node in obj.graph[:n]]
        for target, node in zip(obj.update_targets, obj.graph[n:]):
            roots.append((f"update {target.name or 'shared'}: ", node))
        return roots
    if isinstance(obj, (TensorVariable, Node)):
        obj = [obj]
    roots = []
    for item in obj:
        if isinstance(item, TensorVariable):
            item = item.node
        if not isinstance(item, Node):
            raise TypeError(f"cannot print {item!r}: expected a variable, a list of variables or a function")
        roots.append(("", item))
    return roots


def node_label(node: Node) -> str:
    """``op{attr=value,...}`` for ops, the name (or value) for leaves."""
    if node.op == "input":
        return node.name or "<input>"
    if node.op == "shared":
        return f"shared {node.name}" if node.name else "shared"
    if node.op == "constant":
        return f"constant{{{node.attrs['value']!r}}}" + (f" {node.name!r}" if node.name else "")
    attrs = ",".join(f"{k}={_attr(v)}" for k, v in node.attrs.items() if k not in _HIDDEN_ATTRS)
    label = node.op + (f"{{{attrs}}}" if attrs else "")
    if node.attrs.get("inner") is not None and hasattr(node.attrs["inner"], "describe"):
        label += f"{{{node.attrs['inner'].describe()}}}"
    return label + (f" {node.name!r}" if node.name else "")


def _attr(value) -> str:
    if isinstance(value, tuple):
        return "(" + ",".join(_attr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value) if not hasattr(value, "describe") else value.describe()


def _ids():
    n = 0
    while True:
        k, s = n, ""
        while True:
            s = chr(ord("A") + k % 26) + s
            k = k // 26 - 1
            if k < 0:
                break
        yield s
        n += 1


def debugprint(obj, file=None, print_type: bool = True, print_source: bool = False):
    """Print the graph of a variable, a list of variables or a compiled function (its optimized graph).

    A node used more than once is printed in full once and referred to by ``[id X]`` afterwards.
    ``file=None`` prints to stdout, ``file='str'`` returns the text, otherwise writes to the file object.
    """
    ids: dict[int, str] = {}
    names = _ids()
    lines: list[str] = []
    # nodes a compiled function runs through their numpy reference (no native lowering)
    fallback = getattr(getattr(obj, "program", None), "fallback", None) or set()
    # how the backend runs other nodes, where it is worth saying (the CPU backend's gemm updates)
    notes = getattr(getattr(obj, "program", None), "notes", None) or {}

    def emit(node: Node, prefix: str, head: str, title: str):
        seen = id(node) in ids
        if not seen:
            ids[id(node)] = next(names)
        text = f"{title}{node_label(node)} [id {ids[id(node)]}]"
        if not seen:
            if print_type:
                text += f" <{node.type.short()}>"
            if print_source and not node.is_leaf:
                text += f"  # {node.source}"
            if id(node) in notes:
                text += f"  ({notes[id(node)]})"
            elif id(node) in fallback:
                text += "  (numpy fallback)"
        lines.append(head + text)
        if seen:
            return
        for i, child in enumerate(node.inputs):
            last = i == len(node.inputs) - 1
            emit(child, prefix + ("   " if last else " │ "), prefix + (" └─ " if last else " ├─ "), "")

    for title, root in _roots(obj):
        emit(root, "", "", title)
    text = "\n".join(lines)
    if file == "str":
        return text
    print(text, file=file or sys.stdout)
    return obj


_DOT_STYLE = {
    "input": 'shape=ellipse, style=filled, fillcolor="#b7e1a1"',
    "shared": 'shape=ellipse, style="filled,dashed", fillcolor="#a9c8f0"',
    "constant": 'shape=box, style="filled,rounded", fillcolor="#e0e0e0"',
}
_OP_STYLE = 'shape=box, style=filled, fillcolor="#fff2b3"'


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(obj, name: str = "sympile") -> str:
    """The graph as Graphviz DOT text: nodes labelled with op, dtype and shape; inputs, constants and
    shared variables drawn distinctly; outputs with a double border; edges numbered by input position."""
    roots = _roots(obj)
    order = toposort([node for _, node in roots])
    index = {id(n): i for i, n in enumerate(order)}
    out_titles: dict[int, list[str]] = {}
    for k, (title, node) in enumerate(roots):
        out_titles.setdefault(id(node), []).append(title.strip(": ") or f"output {k}")
    lines = [f'digraph "{_dot_escape(name)}" {{', "  rankdir=TB;", '  node [fontname="Helvetica"];']
    for node in order:
        parts = [node_label(node), node.type.short()]
        style = _DOT_STYLE.get(node.op, _OP_STYLE)
        if id(node) in out_titles:
            style += ", peripheries=2"
            parts.append("→ " + ", ".join(out_titles[id(node)]))
        label = "\\n".join(_dot_escape(p) for p in parts)
        lines.append(f'  n{index[id(node)]} [label="{label}", {style}];')
    for node in order:
        many = len(node.inputs) > 1
        for pos, child in enumerate(node.inputs):
            attr = f' [label="{pos}"]' if many else ""
            lines.append(f"  n{index[id(child)]} -> n{index[id(node)]}{attr};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def pydotprint(obj, outfile: str | None = None, format: str = "dot") -> str:  # noqa: A002 - Theano's name
    """Write the graph to ``outfile`` as DOT (``format='dot'``) or render it with Graphviz (``'svg'``,
    ``'png'``, ``'pdf'``); returns the path written."""
    outfile = outfile or f"sympile_graph.{format}"
    text = to_dot(obj)
    if format == "dot":
        with open(outfile, "w") as fh:
            fh.write(text)
        return outfile
    import shutil  # noqa: PLC0415  (with subprocess, ~5 ms that `import sympile` need not pay)
    import subprocess  # noqa: PLC0415

    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError(
            f"rendering format={format!r} needs Graphviz's 'dot' program, which is not on PATH; install Graphviz "
            "(e.g. apt-get install graphviz) or use format='dot'"
        )
    result = subprocess.run([exe, f"-T{format}", "-o", os.fspath(outfile)], input=text.encode(), capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"Graphviz failed to render {format}: {result.stderr.decode(errors='replace').strip()}")
    return outfile
