"""Wall-clock timing with warm-ups, a repeat count and a time budget.

>>> t = measure(lambda: sum(range(100)), budget_s=0.01)
>>> t.min_s <= t.median_s
True
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median and the minimum over ``repeats`` samples."""

    median_s: float
    min_s: float
    repeats: int


def measure(fn: Callable[[], object], *, warmup: int = 1, min_repeats: int = 5, max_repeats: int = 100,
            budget_s: float = 1.0, inner: int = 1) -> Timing:  # fmt: skip
    """Time ``fn()``: ``warmup`` untimed calls, then samples until ``min_repeats`` are taken and ``budget_s`` has
    passed (or ``max_repeats`` are taken). One sample runs ``fn`` ``inner`` times and counts the mean, so calls
    far below the clock's resolution (per-call overhead) are measurable.
    """
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    # The collector runs at moments no implementation controls; like timeit, keep it out of the samples.
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(samples) < max_repeats:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - t0) / inner)
            if len(samples) >= min_repeats and time.perf_counter() - start >= budget_s:
                break
    finally:
        if was_enabled:
            gc.enable()
    return Timing(statistics.median(samples), min(samples), len(samples))


def measure_interleaved(fns: dict[str, Callable[[], object]], *, warmup: int = 1, min_repeats: int = 5,
                                max_repeats: int = 100, budget_s: float = 1.0,
                        inner: int = 1) -> dict[str, Timing | Exception]:  # fmt: skip
    """Time several callables in rounds (one sample of each per round) rather than one after the other.

    On a shared machine the load changes from second to second; interleaving spreads it evenly over the
    implementations, so their ratios stay fair. The order turns by one each round: a callable that leaves
    threads spinning (JAX's, OpenBLAS's) slows whatever runs next, and that must not always be the same one.
    ``budget_s`` is per callable, as in ``measure``. A callable that raises is dropped from later rounds and its
    exception returned in place of its Timing.

    >>> t = measure_interleaved({"a": lambda: None, "b": lambda: None}, budget_s=0.01)
    >>> sorted(t)
    ['a', 'b']
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    failed: dict[str, Exception] = {}
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start, total_budget = time.perf_counter(), budget_s * len(fns)
        order = list(fns.items())
        for rounds in range(1, max_repeats + 1):
            turn = (rounds - 1) % len(order)
            for name, fn in order[turn:] + order[:turn]:
                if name in failed:
                    continue
                t0 = time.perf_counter()
                try:
                    for _ in range(inner):
                        fn()
                except Exception as exc:  # one failing implementation must not end the others' timing
                    failed[name] = exc
                    continue
                samples[name].append((time.perf_counter() - t0) / inner)
            if rounds >= min_repeats and time.perf_counter() - start >= total_budget:
                break
    finally:
        if was_enabled:
            gc.enable()
    return {name: failed.get(name) or Timing(statistics.median(s), min(s), len(s)) for name, s in samples.items()}
