"""Running one benchmark case: build each implementation, check its result against numpy, time it.

A case is one workload at one size and dtype (``W1 f64``) with a list of implementations. An implementation is a
name and a ``build()`` that returns a zero-argument callable; ``build`` raises ``Unavailable`` when the peer is
missing. Any failure becomes the row's status and the run goes on.

>>> case = Case("demo", "1+1", [Impl("python", lambda: lambda: 2)], expected=2)
>>> [r.status for r in run_case(case, Settings(quick=True))]
['ok']
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from peers import Unavailable
from timing import measure_interleaved

BASELINE = "numpy out="  # the name every case gives numpy at its fastest: the speedup column divides by it


@dataclass
class Settings:
    """What the command line chose: sizes, sympile's backend, which implementations to run."""

    quick: bool = False
    backend: str = "numpy"
    impls: tuple[str, ...] = ()  # name prefixes to run; empty: all
    budget_s: float | None = None

    @property
    def timing(self) -> dict:
        if self.quick:
            return {"warmup": 1, "min_repeats": 3, "max_repeats": 20, "budget_s": self.budget_s or 0.1}
        return {"warmup": 1, "min_repeats": 7, "max_repeats": 200, "budget_s": self.budget_s or 1.5}

    def wants(self, name: str) -> bool:
        return not self.impls or any(name.startswith(p) for p in self.impls)


@dataclass
class Impl:
    """An implementation: ``build()`` compiles or prepares and returns the callable that is timed."""

    name: str
    build: Callable[[], Callable[[], object]]
    checked: bool = True  # False when its result is not the workload's (e.g. the matmuls of W4 alone)


@dataclass
class Case:
    """One workload at one size/dtype; ``expected`` is numpy's result, or a callable computing it lazily."""

    workload: str
    title: str
    impls: list[Impl]
    expected: object = None
    rtol: float = 1e-7
    atol: float = 0.0
    bytes_moved: int | None = None  # main-memory traffic of one call (reads + writes), for the bandwidth share
    unit: str = "ms"
    inner: int = 1  # calls per timing sample


@dataclass
class Row:
    """One line of the table. Times are seconds; ``status`` is 'ok', 'MISMATCH ...', 'n/a ...' or 'error ...'."""

    workload: str
    title: str
    impl: str
    status: str = "ok"
    median_s: float | None = None
    min_s: float | None = None
    repeats: int = 0
    unit: str = "ms"
    speedup: float | None = None  # numpy out= median / this median
    bandwidth_share: float | None = None  # achieved bytes/s over the triad's
    gbps: float | None = None
    bytes_moved: int | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def add_common_options(p, workloads: str, impls: str) -> None:
    """The options bench/run.py and bench/gpu.py share (``p``: an argparse parser); ``workloads`` and ``impls``
    are examples for the help text, e.g. ``"W1,W3"`` and ``"numpy,sympile"``."""
    p.add_argument("--quick", action="store_true", help="small sizes and short timing: a smoke run")
    p.add_argument("--only", default="", help=f"comma-separated workloads, e.g. {workloads} (default: all)")
    p.add_argument("--impls", default="", help=f"comma-separated implementation name prefixes, e.g. {impls}")
    p.add_argument("--budget", type=float, default=None, help="seconds of timing per implementation")
    p.add_argument("--json", metavar="PATH", help="also write the results (and the machine) as JSON")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")


def compare(result, expected, rtol: float, atol: float) -> str | None:
    """None when ``result`` matches ``expected`` (a value or a tuple of values), else what differs."""
    results = result if isinstance(result, (tuple, list)) else (result,)
    wanted = expected if isinstance(expected, (tuple, list)) else (expected,)
    if len(results) != len(wanted):
        return f"{len(results)} outputs, expected {len(wanted)}"
    for i, (got, want) in enumerate(zip(results, wanted)):
        got, want = np.asarray(got), np.asarray(want)
        if got.shape != want.shape:
            return f"output {i}: shape {got.shape}, expected {want.shape}"
        if not np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True):
            with np.errstate(all="ignore"):
                err = np.abs(got.astype(np.float64) - want.astype(np.float64))
                rel = np.nanmax(err / np.maximum(np.abs(want.astype(np.float64)), 1e-300))
            return f"output {i}: max abs err {np.nanmax(err):.3g}, max rel err {rel:.3g}"
    return None


def _reason(exc: BaseException) -> str:
    """One line: the exception and where in the benchmark code it came from."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return (text[:160] + "...") if len(text) > 160 else text + where


def prepare(case: Case, impl: Impl) -> tuple[Row, Callable[[], object] | None]:
    """Build ``impl`` and check its first result against numpy; the callable is None when it cannot be timed."""
    row = Row(case.workload, case.title, impl.name, unit=case.unit, bytes_moved=case.bytes_moved)
    try:
        fn = impl.build()
    except Unavailable as exc:
        row.status = f"n/a ({exc})"
        return row, None
    except Exception as exc:
        row.status = f"error building: {_reason(exc)}"
        return row, None
    try:
        result = fn()  # also the first warm-up: lazy JITs (numba, JAX) compile here, outside the timing
    except Exception as exc:
        row.status = f"error running: {_reason(exc)}"
        return row, None
    if impl.checked and case.expected is not None:
        if callable(case.expected):
            case.expected = case.expected()  # computed once, shared by the other implementations
        mismatch = compare(result, case.expected, case.rtol, case.atol)
        if mismatch:
            row.status = f"MISMATCH vs numpy ({mismatch})"
    elif not impl.checked:
        row.status = "ok (not comparable: a part of the work)"
    return row, fn


def run_case(case: Case, settings: Settings, on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Build and check every wanted implementation of ``case``, time them interleaved, then compute the speedup
    of each over ``numpy out=``. Never raises: failures are the rows' status."""
    prepared = [prepare(case, impl) for impl in case.impls if settings.wants(impl.name) or impl.name == BASELINE]
    fns = {row.impl: fn for row, fn in prepared if fn is not None}
    timings = measure_interleaved(fns, inner=case.inner, **settings.timing) if fns else {}
    rows = []
    for row, _ in prepared:
        t = timings.get(row.impl)
        if isinstance(t, Exception):
            row.status = f"error timing: {_reason(t)}"
        elif t is not None:
            row.median_s, row.min_s, row.repeats = t.median_s, t.min_s, t.repeats
            if case.bytes_moved:
                row.gbps = case.bytes_moved / t.median_s / 1e9
        rows.append(row)
        if on_row:
            on_row(row)
    base = next((r for r in rows if r.impl == BASELINE and r.median_s), None)
    if base:
        for r in rows:
            if r.median_s:
                r.speedup = base.median_s / r.median_s
    return rows
