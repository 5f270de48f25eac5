"""The machine the benchmarks run on, and the thread settings every implementation shares.

Importing this module sets the BLAS/OpenMP thread variables (only where the user has not set them), so it must
be imported before numpy or any peer library: they read the variables once, when they load.

>>> import machine  # doctest: +SKIP
>>> print(machine.describe())  # doctest: +SKIP
"""

from __future__ import annotations

import os
import platform

# Every implementation gets every core: BLAS (numpy's OpenBLAS, MKL), OpenMP (numba's threading layer),
# numexpr and numba each read their own variable. setdefault: a value the user exported wins.
CORES = os.cpu_count() or 1
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_MAX_THREADS",
               "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")  # fmt: skip
for _var in THREAD_VARS:
    os.environ.setdefault(_var, str(CORES))

# Variables that change speed and that we report but never touch: OPENBLAS_CORETYPE can pin OpenBLAS to a slower
# kernel set on this machine; unsetting it silently would make our numbers disagree with the user's numpy.
REPORTED_VARS = (*THREAD_VARS, "OPENBLAS_CORETYPE", "SYMPILE_NUM_THREADS", "SYMPILE_CACHE_DIR", "XLA_FLAGS")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or platform.processor() elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_info() -> list[str]:
    """The BLAS libraries numpy uses, with their thread counts (threadpoolctl), else numpy's build config."""
    import numpy as np

    try:
        from threadpoolctl import threadpool_info

        pools = threadpool_info()
        return [
            f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture', '?')}, "
            f"{p.get('num_threads')} threads) {os.path.basename(p.get('filepath', ''))}"
            for p in pools
        ] or ["threadpoolctl found no thread pool"]
    except ImportError:
        pass
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return [f"{blas.get('name', '?')} {blas.get('version', '')} (numpy build config)"]
    except Exception as exc:  # an odd numpy build must not stop the benchmark
        return [f"unknown ({exc})"]


def describe() -> dict:
    """Everything that decides the numbers: CPU, core count, Python, numpy, BLAS, thread variables."""
    import numpy as np

    return {
        "cpu": cpu_model(),
        "cores": CORES,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas_info(),
        "env": {v: os.environ.get(v, "(unset)") for v in REPORTED_VARS},
        "load": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def format_description(info: dict) -> str:
    """The description as a few readable lines."""
    lines = [
        f"machine: {info['cpu']}, {info['cores']} cores; {info['platform']}",
        f"python {info['python']}, numpy {info['numpy']}",
        *(f"BLAS: {b}" for b in info["blas"]),
        "env: " + " ".join(f"{k}={v}" for k, v in info["env"].items()),
    ]
    if info["load"]:
        busy = info["load"][0] > 0.5
        lines.append(f"load average {info['load'][0]:.2f} at start" + (" (other work running: noisy)" if busy else ""))
    return "\n".join(lines)
