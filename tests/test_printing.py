"""sympile.printing: debugprint text trees, DOT output and Graphviz rendering."""

from __future__ import annotations

import io
import re
import shutil
import subprocess

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st
from sympile.printing import debugprint, pydotprint, to_dot

HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="Graphviz 'dot' is not installed (apt-get install graphviz)")

FULL_LINE = re.compile(r"\[id (\w+)\] <")  # a node printed in full carries its type; a reference does not


def _full_ids(text: str) -> list[str]:
    return FULL_LINE.findall(text)


def test_debugprint_variable_tree():
    x = st.dvector("x")
    text = debugprint(st.exp(x) * 2.0 + x, file="str")
    assert text.splitlines() == [
        "add [id A] <float64[?]>",
        " ├─ mul [id B] <float64[?]>",
        " │  ├─ exp [id C] <float64[?]>",
        " │  │  └─ x [id D] <float64[?]>",
        " │  └─ constant{2.} [id E] <float64[]>",
        " └─ x [id D]",
    ]


def test_shared_subexpression_printed_once_then_referred_to_by_id():
    x = st.dmatrix("x")
    e = st.tanh(x @ x.T)
    text = debugprint(e + e * 3, file="str")
    lines = text.splitlines()
    tanh_lines = [ln for ln in lines if "tanh" in ln]
    assert len(tanh_lines) == 2
    full, ref = tanh_lines
    node_id = re.search(r"\[id (\w+)\]", full).group(1)
    assert full.endswith("<float64[?,?]>")
    assert ref.strip(" │├└─") == f"tanh [id {node_id}]"  # the second use is a bare reference
    assert sum(1 for ln in lines if "matmul" in ln) == 1  # its subtree is not repeated
    ids = _full_ids(text)
    assert len(ids) == len(set(ids))  # each node printed in full exactly once


def test_debugprint_list_shares_ids_across_roots():
    x = st.dvector("x")
    y = st.exp(x)
    text = debugprint([y + 1, y * 2], file="str")
    roots = [ln for ln in text.splitlines() if not ln.startswith(" ")]
    assert [r.split(" [")[0] for r in roots] == ["add", "mul"]
    assert text.count("exp [id") == 2 and len(_full_ids(text)) == len(set(_full_ids(text)))


def test_debugprint_to_stdout_and_file_objects(capsys):
    x = st.dscalar("x")
    expr = st.sqrt(x)
    assert debugprint(expr) is expr
    printed = capsys.readouterr().out
    assert printed == debugprint(expr, file="str") + "\n"
    buf = io.StringIO()
    debugprint([expr], file=buf)
    assert buf.getvalue() == printed


def test_debugprint_options_and_leaves():
    x = st.dvector("x")
    w = sp.shared(np.zeros(3), name="w")
    expr = x + w + st.constant(np.arange(3.0))
    text = debugprint(expr, file="str", print_type=False)
    assert "<" not in text
    assert "shared w" in text and "constant{[0.,1.,2.]}" in text
    with_source = debugprint(expr, file="str", print_source=True)
    assert f"# {__file__}:" in with_source
    with pytest.raises(TypeError, match="cannot print"):
        debugprint([x, 3], file="str")


def test_debugprint_function_prints_optimized_graph_and_updates():
    x = st.dvector("x")
    acc = sp.shared(np.zeros(3), name="acc")
    out = st.exp(x) + st.exp(x)  # two equal subexpressions: the optimizer merges them
    f = sp.function([x], out, updates=[(acc, acc + x)])
    before = debugprint(out, file="str")
    after = debugprint(f, file="str")
    assert len(_full_ids(before)) == 4  # x, exp, exp, add
    assert after.startswith(debugprint(f.graph[: f.n_outputs], file="str"))
    output_part = after.split("update acc: ")[0]
    assert len(_full_ids(output_part)) < 4  # the optimizer merged (or fused) the two exp(x)
    unoptimized = sp.function([x], out, updates=[(acc, acc + x)], optimize=False)
    assert debugprint(unoptimized, file="str").startswith(before)  # without optimization: the graph as built
    update_lines = [ln for ln in after.splitlines() if ln.startswith("update acc: ")]
    assert len(update_lines) == 1 and "<float64[?]>" in update_lines[0]
    assert "shared acc" in after
    np.testing.assert_allclose(f([0.0, 1.0, 2.0]), 2 * np.exp([0.0, 1.0, 2.0]))  # printing did not break it


# --- DOT -------------------------------------------------------------------------------------------------------
NODE_RE = re.compile(r'^\s*(n\d+) \[label="((?:[^"\\]|\\.)*)", (.*)\];$')
EDGE_RE = re.compile(r"^\s*(n\d+) -> (n\d+)(?: \[label=\"(\d+)\"\])?;$")


def _parse_dot(text: str) -> tuple[dict, list]:
    """A strict reader for the subset of DOT to_dot writes: fails on any line it does not understand."""
    lines = text.strip().splitlines()
    assert re.match(r'^digraph "[^"]*" \{$', lines[0]) and lines[-1] == "}"
    nodes, edges = {}, []
    for line in lines[1:-1]:
        if m := NODE_RE.match(line):
            assert m.group(1) not in nodes
            nodes[m.group(1)] = {"label": m.group(2).split("\\n"), "style": m.group(3)}
        elif m := EDGE_RE.match(line):
            edges.append((m.group(1), m.group(2), m.group(3)))
        else:
            assert re.match(r"^\s*(rankdir=\w+|node \[.*\]);$", line), line
    for a, b, _ in edges:
        assert a in nodes and b in nodes
    return nodes, edges


def _by_first_label(nodes: dict, text: str) -> dict:
    found = [n for n in nodes.values() if n["label"][0] == text]
    assert len(found) == 1, (text, nodes)
    return found[0]


def test_to_dot_labels_styles_and_outputs():
    x = st.fmatrix("x")
    b = sp.shared(np.zeros(3, dtype=np.float32), name="b")
    y = st.tanh(x + b) * st.constant(np.float32(0.5))
    text = to_dot([y, y.sum()])
    nodes, edges = _parse_dot(text)
    assert len(nodes) == 7 and len(edges) == 6  # x, b, 0.5, add, tanh, mul, sum
    inp = _by_first_label(nodes, "x")
    shr = _by_first_label(nodes, "shared b")
    const = _by_first_label(nodes, "constant{0.5}")
    tanh = _by_first_label(nodes, "tanh")
    assert inp["label"][1] == "float32[?,?]" and shr["label"][1] == "float32[?]" and const["label"][1] == "float32[]"
    assert tanh["label"][1] == "float32[?,?]"
    assert _by_first_label(nodes, "sum{axis=None,keepdims=False}")["label"][1:] == ["float32[]", "→ output 1"]
    # inputs, shared variables, constants and ops are drawn four different ways
    styles = {inp["style"], shr["style"], const["style"], tanh["style"]}
    assert len(styles) == 4
    outputs = [n for n in nodes.values() if "peripheries=2" in n["style"]]
    assert sorted(n["label"][-1] for n in outputs) == ["→ output 0", "→ output 1"]
    # edges into a binary op are numbered by argument position
    add_id = next(k for k, n in nodes.items() if n["label"][0] == "add")
    assert sorted(pos for _, dst, pos in edges if dst == add_id) == ["0", "1"]


def test_to_dot_of_a_function_marks_updates_and_escapes_names():
    x = st.dvector('say "hi"')
    acc = sp.shared(0.0, name="acc")
    f = sp.function([x], x * 2, updates={acc: acc + x.sum()})
    text = to_dot(f)
    nodes, _ = _parse_dot(text)
    assert any(n["label"][0] == 'say \\"hi\\"' for n in nodes.values())
    assert any(n["label"][-1] == "→ update acc" for n in nodes.values())
    assert any(n["label"][-1] == "→ output 0" for n in nodes.values())
    if HAVE_DOT:  # Graphviz itself accepts it
        proc = subprocess.run(["dot", "-Tcanon"], input=text, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr


def test_pydotprint_writes_dot(tmp_path, monkeypatch):
    x = st.dvector("x")
    expr = st.log1p(st.exp(x))
    path = tmp_path / "graph.dot"
    assert pydotprint(expr, outfile=str(path), format="dot") == str(path)
    assert path.read_text() == to_dot(expr)
    monkeypatch.chdir(tmp_path)
    default = pydotprint(expr)
    assert (tmp_path / default).read_text() == to_dot(expr)


@needs_dot
@pytest.mark.parametrize(("fmt", "magic"), [("svg", b"<svg"), ("png", b"\x89PNG")])
def test_pydotprint_renders_with_graphviz(tmp_path, fmt, magic):
    x = st.dvector("x")
    s = sp.shared(np.ones(2), name="s")
    f = sp.function([x], (x * s).sum(), updates=[(s, s * 2)])
    out = tmp_path / f"graph.{fmt}"
    assert pydotprint(f, outfile=str(out), format=fmt) == str(out)
    data = out.read_bytes()
    assert magic in data[:400]


def test_pydotprint_without_graphviz_raises_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    x = st.dvector("x")
    out = tmp_path / "graph.svg"
    with pytest.raises(RuntimeError, match=r"format='svg' needs Graphviz's 'dot'.*format='dot'"):
        pydotprint(x * 2, outfile=str(out), format="svg")
    assert not out.exists()
    dot_file = tmp_path / "graph.dot"
    pydotprint(x * 2, outfile=str(dot_file))  # DOT text needs no Graphviz
    assert dot_file.read_text().startswith("digraph")


@needs_dot
def test_pydotprint_reports_graphviz_failure(tmp_path):
    x = st.dvector("x")
    with pytest.raises(RuntimeError, match="Graphviz failed"):
        pydotprint(x * 2, outfile=str(tmp_path / "g.nope"), format="nope")
