"""W5, compile latency: cold, the same graph again in the same process, and a new process with a warm disk cache.

"Compile" means time to first result: build the function and call it once on 1-element inputs (lazy JITs such
as numba and JAX compile at the first call). Each measurement runs in a fresh child process with its own empty
cache directory; a second child on the same directory gives the warm-disk-cache number. Run as a script, this
module is that child:

    python bench/compile_latency.py --child sympile numpy /tmp/cache   # prints one JSON line
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import numpy as np  # imported before the timed import of each library

IMPLS = ("sympile", "numexpr", "numba", "pytensor", "jax")
NO_DISK_CACHE = {"numexpr": "numexpr has no disk cache"}


# --- the child: one process, one implementation ------------------------------------------------------------------
prange = range  # numba.prange once _maker has imported numba (numba cannot compile an import statement)


def _w1_kernel(x, y, z, out):  # numba compiles this; at module level so its disk cache can find it again
    for i in prange(x.size):
        out[i] = np.exp(-x[i] * x[i] * 0.5) * np.sin(y[i]) + np.log1p(z[i] * z[i])
    return out


def _maker(impl: str, backend: str, cache_dir: str):
    """Import the library (timed by the caller) and return make(args) -> compile + first call."""
    if impl == "sympile":
        import sympile
        import sympile.tensor as st

        def make(args):
            x, y, z = st.dvectors("x", "y", "z")
            f = sympile.function([x, y, z], st.exp(-x * x / 2) * st.sin(y) + st.log1p(z * z), backend=backend)
            return f(*args)

    elif impl == "numexpr":
        import numexpr as ne

        def make(args):
            return ne.evaluate("exp(-x*x/2)*sin(y) + log1p(z*z)", local_dict=dict(zip("xyz", args)))

    elif impl == "numba":
        global prange
        import numba

        prange = numba.prange

        def make(args):
            # A new dispatcher each time: numba keeps compiled code per dispatcher (and on disk with cache=True).
            kernel = numba.njit(parallel=True, fastmath=False, cache=True)(_w1_kernel)
            return kernel(*args, np.empty_like(args[0]))

    elif impl == "pytensor":
        import pytensor  # the compile directory comes from PYTENSOR_FLAGS, set by the parent
        import pytensor.tensor as pt

        def make(args):
            x, y, z = pt.dvectors("x", "y", "z")
            return pytensor.function([x, y, z], pt.exp(-x * x / 2) * pt.sin(y) + pt.log1p(z * z))(*args)

    elif impl == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_compilation_cache_dir", os.path.join(cache_dir, "jax"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        jnp = jax.numpy

        def make(args):
            f = jax.jit(lambda x, y, z: jnp.exp(-x * x / 2) * jnp.sin(y) + jnp.log1p(z * z))
            return f(*args).block_until_ready()

    else:
        raise ValueError(f"unknown implementation {impl!r}; one of {IMPLS}")
    return make


def child(impl: str, backend: str, cache_dir: str) -> dict:
    """Seconds to import, to compile cold, and to compile the same graph again in this process."""
    args = [np.array([0.5]), np.array([1.5]), np.array([2.5])]
    t0 = time.perf_counter()
    make = _maker(impl, backend, cache_dir)
    t1 = time.perf_counter()
    make(args)
    t2 = time.perf_counter()
    make(args)
    t3 = time.perf_counter()
    return {"import_s": t1 - t0, "cold_s": t2 - t1, "again_s": t3 - t2}


# --- the parent: run the children, make table rows ---------------------------------------------------------------
def _env(cache_dir: str) -> dict:
    env = dict(os.environ)
    env["SYMPILE_CACHE_DIR"] = os.path.join(cache_dir, "sympile")
    env["NUMBA_CACHE_DIR"] = os.path.join(cache_dir, "numba")
    flags = env.get("PYTENSOR_FLAGS", "")
    env["PYTENSOR_FLAGS"] = ",".join(f for f in (flags, f"compiledir={os.path.join(cache_dir, 'pytensor')}") if f)
    return env


def _run_child(impl: str, backend: str, cache_dir: str, timeout_s: float = 300) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", impl, backend, cache_dir]
    proc = subprocess.run(cmd, env=_env(cache_dir), capture_output=True, text=True, timeout=timeout_s)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"child exited {proc.returncode}: {tail[:200]}")
    return json.loads(lines[-1])


def _files_under(path: str) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def measure_impl(impl: str, backend: str, repeats: int) -> dict[str, list[float] | str]:
    """Lists of seconds per phase over ``repeats`` pairs of children, plus a note on the disk cache."""
    phases: dict = {"import": [], "cold": [], "again": [], "warm": [], "note": ""}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="sympile-bench-w5-") as cache_dir:
            first = _run_child(impl, backend, cache_dir)
            written = _files_under(cache_dir)
            second = _run_child(impl, backend, cache_dir)
        phases["import"].append(first["import_s"])
        phases["cold"].append(first["cold_s"])
        phases["again"].append(first["again_s"])
        phases["warm"].append(second["cold_s"])
        if impl in NO_DISK_CACHE:
            phases["note"] = NO_DISK_CACHE[impl] + ": this is a cold compile in a new process"
        elif not written:
            phases["note"] = "nothing written to the cache directory: this is a cold compile in a new process"
    return phases


PHASES = (("import", "import"), ("cold", "cold"), ("again", "same process again"),
          ("warm", "new process, warm disk cache"))  # fmt: skip


def w5(settings) -> Iterator:
    """Rows (not Cases): W5 is measured in child processes, not by the in-process timer."""
    from harness import Row
    from sympile_impl import impl_name

    repeats = 1 if settings.quick else 3
    for impl in IMPLS:
        name = impl_name(settings.backend) if impl == "sympile" else impl
        if not settings.wants(name):
            continue
        try:
            phases = measure_impl(impl, settings.backend, repeats)
        except Exception as exc:  # a missing or broken peer: say why and go on
            yield Row("W5", "compile latency (W1 expr)", name, status=f"n/a ({exc})")
            continue
        for key, label in PHASES:
            times = phases[key]
            status = "ok" if key != "warm" or not phases["note"] else f"ok ({phases['note']})"
            yield Row("W5", "compile latency (W1 expr)", f"{name}: {label}", status=status,
                      median_s=statistics.median(times), min_s=min(times), repeats=len(times))  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] != ["--child"] or len(sys.argv) != 5:
        sys.exit("usage: compile_latency.py --child IMPL BACKEND CACHE_DIR (bench/run.py --only W5 runs it)")
    print(json.dumps(child(*sys.argv[2:5])))
