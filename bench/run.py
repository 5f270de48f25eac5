"""sympile's benchmarks against numpy and the peers (numexpr, numba, PyTensor, JAX), measured in one run.

    .venv/bin/python bench/run.py                      # all workloads, full sizes (a few minutes)
    .venv/bin/python bench/run.py --quick --only W1,W6 # a smoke run
    .venv/bin/python bench/run.py --backend numpy --json results.json

Workloads (issue 5): W1 exp(-x*x/2)*sin(y) + log1p(z*z), 10M float64 and float32; W2 sum(exp(x)*y), 10M;
W3 row softmax 4096x1024 float32; W4 one SGD step of an MLP 784-512-10 with its gradient; W5 compile latency;
W6 per-call overhead on 1-element inputs; W7 STREAM triad, the bandwidth limit W1 and W2 are shown against.
Every result is checked against numpy before it is timed; a peer that is missing or fails says why in its row.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time

import machine  # first: it sets the thread variables before numpy and the peers load them

# isort: split
import compile_latency
import elementwise
import nn
import peers
from harness import Case, Row, Settings, add_common_options, run_case
from report import BANDWIDTH_WORKLOADS, add_bandwidth_share, format_table, triad_limit
from sympile_impl import default_backend

WORKLOADS = {
    "W1": elementwise.w1,
    "W2": elementwise.w2,
    "W3": nn.w3,
    "W4": nn.w4,
    "W5": compile_latency.w5,
    "W6": elementwise.w6,
    "W7": elementwise.w7,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default=None, help="sympile backend (default: 'cpu' if registered, else 'numpy')")
    add_common_options(p, "W1,W3", "numpy,sympile")
    return p.parse_args(argv)


def selected(only: str) -> list[str]:
    names = [w.strip().upper() for w in only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    return names


def progress(row: Row) -> None:
    """One line on stderr per finished row, so a long run shows where it is."""
    t = f"{row.median_s * 1e3:.3f} ms" if row.median_s else ""
    print(f"  {row.workload} {row.title}: {row.impl} {t} {row.status}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sympile.runtime.backends import BACKENDS

    backend = args.backend or default_backend()
    if backend not in BACKENDS:
        raise SystemExit(f"unknown sympile backend {backend!r}; registered: {', '.join(sorted(BACKENDS))}")
    settings = Settings(quick=args.quick, backend=backend, budget_s=args.budget,
                        impls=tuple(p.strip() for p in args.impls.split(",") if p.strip()))  # fmt: skip
    info = machine.describe()
    versions = peers.versions()
    started = datetime.datetime.now(datetime.timezone.utc)
    print(machine.format_description(info))
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"sympile backend: {backend}; {'quick' if args.quick else 'full'} sizes; {started:%Y-%m-%d %H:%M} UTC\n")

    rows: list[Row] = []
    t0 = time.perf_counter()
    for name in selected(args.only):
        print(f"{name} ...", file=sys.stderr, flush=True)
        for item in WORKLOADS[name](settings):
            if isinstance(item, Case):
                rows += run_case(item, settings, on_row=progress)
            else:
                progress(item)
                rows.append(item)
    limit = triad_limit(rows, elementwise.TRIAD_IMPLS)
    add_bandwidth_share(rows, limit)

    print(format_table(rows, markdown=args.markdown))
    print("\nvs numpy out= : numpy with preallocated out= buffers, its median / this median (above 1 is faster).")
    if limit:
        print(f"of triad: bytes moved / median / best STREAM triad bandwidth ({limit:.1f} GB/s: W7's fastest sample).")
    elif any(r.workload in BANDWIDTH_WORKLOADS for r in rows):
        print("of triad: add W7 to --only to see W1/W2 as a share of the memory bandwidth.")
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": started.isoformat(), "machine": info, "versions": versions, "backend": backend,
                       "quick": args.quick, "triad_gbps": limit, "rows": [r.to_json() for r in rows]}, f,
                      indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
