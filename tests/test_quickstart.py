"""examples/quickstart.py runs as a new user runs it (``make demo``), and the documentation's examples run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "quickstart.py"


def test_quickstart_runs_and_writes_dot(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLE)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    data = np.array([[0.0, 1.0], [2.0, -1.0], [-3.0, 0.5]])
    probs = 1 / (1 + np.exp(-(data @ [0.5, -0.25])))
    mean_line = next(line for line in out.splitlines() if line.startswith("mean: "))
    np.testing.assert_allclose(float(mean_line.split()[1]), probs.mean(), rtol=1e-12)
    assert "accumulated total: 10.0" in out
    assert "debugprint(f):" in out and "matmul [id" in out
    dot_file = tmp_path / "quickstart_graph.dot"
    assert f"wrote the graph as DOT to {dot_file}" in out
    text = dot_file.read_text()
    assert text.startswith("digraph") and text.rstrip().endswith("}") and "matmul" in text


def test_quickstart_takes_an_output_path(tmp_path):
    target = tmp_path / "sub" / "g.dot"
    target.parent.mkdir()
    proc = subprocess.run([sys.executable, str(EXAMPLE), str(target)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert target.read_text().startswith("digraph")


@pytest.mark.parametrize("doc", ["README.md", "docs/getting-started.md"])
def test_documentation_examples_run(doc, tmp_path, monkeypatch, capsys):
    """Every ```python block of the page runs, in order, in one namespace (later blocks use earlier names)."""
    text = (ROOT / doc).read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert blocks, f"no python examples found in {doc}"
    monkeypatch.chdir(tmp_path)  # anything an example writes lands here
    namespace: dict = {"__name__": "__doc_example__"}
    for i, block in enumerate(blocks):
        code = compile(block, f"{doc}[block {i}]", "exec")
        exec(code, namespace)  # noqa: S102 - running our own documentation is the point
    capsys.readouterr()
