"""The benchmark harness end to end: a quick W1 + W6 run exits 0 and reports every implementation.

Not a timing test: it asserts that each row is there, that sympile's and numpy's results agree (the harness checks
each result with allclose before timing it) and that a missing peer is reported, not fatal.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPLS = ["numpy", "numpy out=", "numexpr", "numba", "pytensor", "jax", "sympile[numpy]"]


def test_quick_run_prints_a_row_per_implementation(tmp_path):
    out_json = tmp_path / "bench.json"
    cmd = [sys.executable, "bench/run.py", "--quick", "--only", "W1,W6", "--backend", "numpy", "--budget", "0.02",
           "--json", str(out_json)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]

    table = proc.stdout.splitlines()
    for workload, case in [("W1", "f64"), ("W1", "f32"), ("W6", "1 element")]:
        for impl in IMPLS:
            hits = [line for line in table if line.startswith(workload) and case in line and f"  {impl}  " in line]
            assert len(hits) == 1, f"{workload} {case}: expected one row for {impl!r}\n{proc.stdout}"

    rows = json.loads(out_json.read_text())["rows"]
    assert {r["workload"] for r in rows} == {"W1", "W6"}
    assert len(rows) == 3 * len(IMPLS)
    for r in rows:
        # A peer may be missing here ("n/a (...)"), but nothing may disagree with numpy or crash.
        assert r["status"] == "ok" or r["status"].startswith("n/a"), r
        if r["status"] == "ok":
            assert r["median_s"] > 0 and r["min_s"] <= r["median_s"]
    for r in rows:
        if r["impl"] in ("numpy", "numpy out=", "sympile[numpy]"):
            assert r["status"] == "ok", r
    baseline = [r for r in rows if r["impl"] == "numpy out="]
    assert all(r["speedup"] == 1.0 for r in baseline)
