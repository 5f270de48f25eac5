"""The results table (plain text or markdown) and the bandwidth share of the memory-bound workloads.

>>> from harness import Row
>>> table = format_table([Row("W1", "f64", "numpy", median_s=0.3, min_s=0.29, speedup=1.0)])
>>> "300.0 ms" in table.splitlines()[2]
True
"""

from __future__ import annotations

from harness import Row

SCALE = {"ms": 1e3, "us": 1e6}
BANDWIDTH_WORKLOADS = ("W1", "W2")  # shown as a share of the STREAM triad's bandwidth


def triad_limit(rows: list[Row], triad_impls: tuple[str, ...]) -> float | None:
    """The best bandwidth (GB/s) any trusted triad implementation reached, or None when W7 did not run.

    From the fastest sample, not the median: the limit is what the memory system can do, and on a shared machine
    the median also measures the neighbours.
    """
    speeds = [r.bytes_moved / r.min_s / 1e9 for r in rows if r.workload == "W7" and r.impl in triad_impls
              and r.min_s and r.bytes_moved and r.status.startswith("ok")]  # fmt: skip
    return max(speeds) if speeds else None


def add_bandwidth_share(rows: list[Row], limit_gbps: float | None) -> None:
    """Fill ``bandwidth_share`` of the W1/W2 rows: bytes moved / time / triad bandwidth."""
    if not limit_gbps:
        return
    for r in rows:
        if r.workload in BANDWIDTH_WORKLOADS and r.gbps:
            r.bandwidth_share = r.gbps / limit_gbps


def _time(seconds: float | None, unit: str) -> str:
    if seconds is None:
        return "-"
    value = seconds * SCALE[unit]
    return f"{value:.1f} {unit}" if value >= 10 else f"{value:.2f} {unit}"


def _cells(r: Row) -> list[str]:
    return [
        r.workload,
        r.title,
        r.impl,
        _time(r.median_s, r.unit),
        _time(r.min_s, r.unit),
        f"{r.speedup:.2f}x" if r.speedup else "",
        f"{r.gbps:.1f}" if r.gbps else "",
        f"{100 * r.bandwidth_share:.0f}%" if r.bandwidth_share else "",
        r.status,
    ]


HEADER = ["workload", "case", "implementation", "median", "min", "vs numpy out=", "GB/s", "of triad", "status"]
RIGHT = {3, 4, 5, 6, 7}  # numeric columns


def format_table(rows: list[Row], markdown: bool = False) -> str:
    """One line per row; 'vs numpy out=' is numpy-out='s median over this one (above 1: faster than numpy)."""
    cells = [_cells(r) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---:" if i in RIGHT else "---" for i in
                                                                  range(len(HEADER))) + "|"]  # fmt: skip
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(HEADER, *cells)]
    widths[-1] = 0  # the status is last and left as long as it is

    def line(row):
        return "  ".join(c.rjust(w) if i in RIGHT else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))

    out = [line(HEADER), "  ".join("-" * max(w, 6) for w in widths)]
    prev = None
    for r, row in zip(rows, cells):
        if prev is not None and (r.workload, r.title) != prev:
            out.append("")
        prev = (r.workload, r.title)
        out.append(line(row).rstrip())
    return "\n".join(out)
