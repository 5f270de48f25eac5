"""sympile's CUDA backend against CuPy and PyTorch on the same GPU (issue 6), and as a share of its bandwidth.

    make bench-gpu                                   # = .venv/bin/python bench/gpu.py
    .venv/bin/python bench/gpu.py --quick            # small sizes, short timing
    .venv/bin/python bench/gpu.py --only G1,G4 --json gpu.json --markdown

Workloads: G0 the bandwidth limit (device-to-device copy and STREAM triad by pycuda/CuPy/PyTorch); G1 W1's
exp(-x*x/2)*sin(y) + log1p(z*z), 10M float64 and float32; G2 sum(exp(x)*y), 10M; G3 row softmax 4096x1024
float32; G4 the MLP 784-512-10 SGD step, batch 256, float32 (bench/gpu_workloads.py says how each is run).
Every result is checked against numpy before it is timed; a peer that is missing says why in its row. Without
pycuda or a GPU this prints one line saying why and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import time

import machine  # first: it sets the thread variables before numpy loads them (the numpy out= yardstick)

# isort: split
from harness import BASELINE, Case, Row, add_common_options, run_case
from report import format_table


def _import_sympile() -> None:
    """``import sympile`` from the installed package, else straight from this checkout (a fresh copy on a lent
    machine with no internet, where ``pip install -e .`` cannot fetch its build requirements): the package
    ``sympile`` is ``frontend/``, and its subpackages ``compiler``/``runtime`` sit beside it at the root."""
    try:
        import sympile  # noqa: F401
    except ModuleNotFoundError:
        import importlib.util

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        init = os.path.join(root, "frontend", "__init__.py")
        spec = importlib.util.spec_from_file_location(
            "sympile", init, submodule_search_locations=[os.path.join(root, "frontend"), root]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["sympile"] = module
        spec.loader.exec_module(module)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(p, "G1,G3", "cupy,sympile")
    p.add_argument("--tiny", action="store_true", help="toy sizes (the smoke test's simulated driver)")
    p.add_argument("--driver", choices=("pycuda", "cupy"), default="pycuda",
                   help="how sympile reaches the GPU: pycuda (sympile[cuda]), or CuPy's bindings through "
                        "bench/cupy_driver.py where pycuda is not installed")  # fmt: skip
    return p.parse_args(argv)


def progress(row: Row) -> None:
    t = f"{row.median_s * 1e3:.3f} ms" if row.median_s else ""
    print(f"  {row.workload} {row.title}: {row.impl} {t} {row.status}", file=sys.stderr, flush=True)


def against_peers(rows: list[Row]) -> list[str]:
    """Per case: the best GPU peer's median over each sympile row's median (above 1: sympile is faster)."""
    lines = []
    cases = dict.fromkeys((r.workload, r.title) for r in rows)
    for case in cases:
        mine = [r for r in rows if (r.workload, r.title) == case and r.median_s]
        peers = [r for r in mine if r.impl.startswith(("cupy", "torch"))]
        if not peers:
            continue
        best = min(peers, key=lambda r: r.median_s)
        for r in mine:
            if r.impl.startswith("sympile"):
                lines.append(f"  {case[0]} {case[1]}: {r.impl} {best.median_s / r.median_s:.2f}x of {best.impl}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from peers import Unavailable

    try:
        _import_sympile()
        import gpu_peers

        from sympile.runtime.cuda_backend import use_driver

        driver = None  # cuda_backend's own: pycuda, or the one a caller's use_driver installed (the tests' fake)
        if args.driver == "cupy":
            import cupy_driver

            driver = cupy_driver.CupyDriver(gpu_peers.cupy())
        with use_driver(driver) if driver is not None else contextlib.nullcontext():
            gpu_peers.sympile_device()
    except Unavailable as exc:
        hint = " (--driver cupy runs sympile through CuPy instead)" if "pycuda" in str(exc) else ""
        print(f"bench-gpu: skipped, no GPU: {exc}{hint}")
        return 0
    except ImportError as exc:  # sympile's own requirements (llvmlite, numpy): a set-up error, not a missing GPU
        print(f"bench-gpu: cannot run: {exc} (use the project's .venv, or carry its wheels: docs/cuda.md)")
        return 1
    with use_driver(driver) if driver is not None else contextlib.nullcontext():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import gpu_peers
    import gpu_workloads as gw

    names = [w.strip().upper() for w in args.only.split(",") if w.strip()] or list(gw.WORKLOADS)
    unknown = [w for w in names if w not in gw.WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(gw.WORKLOADS)}")
    settings = gw.GpuSettings(quick=args.quick or args.tiny, tiny=args.tiny, budget_s=args.budget,
                              impls=tuple(p.strip() for p in args.impls.split(",") if p.strip()))  # fmt: skip
    info = machine.describe()
    info["gpu"] = gpu_peers.describe_gpu()
    versions = gpu_peers.versions()
    started = datetime.datetime.now(datetime.timezone.utc)
    print(machine.format_description(info))
    print(info["gpu"] + f"; driver: {args.driver}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    print(f"sympile backend: cuda; {size} sizes; {started:%Y-%m-%d %H:%M} UTC\n")

    rows: list[Row] = []
    t0 = time.perf_counter()
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        for case in gw.WORKLOADS[name](settings):
            assert isinstance(case, Case)
            rows += run_case(case, settings, on_row=progress)
    limit = gw.bandwidth_limit(rows)
    gw.add_bandwidth_share(rows, limit)

    print(format_table(rows, markdown=args.markdown))
    print(f"\nvs numpy out= : {BASELINE} on the CPU, its median / this median (above 1 is faster).")
    print(f"{gw.RESIDENT}: inputs and outputs are shared variables in GPU memory (only what ops computed on the "
          f"host need crosses the bus: listed below); {gw.HOST}: host arrays copied up and back at every call (a "
          "Function takes no device arrays as arguments).")  # fmt: skip
    if limit:
        print(f"of triad: bytes moved / median / the best G0 peer bandwidth ({limit:.0f} GB/s, fastest sample).")
    elif any(r.workload in gw.BANDWIDTH_WORKLOADS for r in rows):
        print("of triad: needs G0 with CuPy, PyTorch or pycuda: add G0 to --only.")
    host = [f"{w} ({', '.join(sorted(ops))})" for w, ops in sorted(gw.HOST_OPS.items()) if ops]
    if host:
        print(
            "sympile[cuda] computes these ops with numpy on the host, their operands crossing the bus: "
            + "; ".join(host)
        )
    ratios = against_peers(rows)
    if ratios:
        print("sympile against the fastest GPU peer (its median / sympile's; above 1: sympile is faster):")
        print("\n".join(ratios))
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": started.isoformat(), "machine": info, "versions": versions, "backend": "cuda",
                       "sizes": size, "bandwidth_gbps": limit, "rows": [r.to_json() for r in rows]}, f,
                      indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
