"""A new process whose code is in the disk cache loads it without LLVM: the host is identified from what the OS
reports (runtime/host.py) and the object is mapped by our own loader (runtime/objload.py)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from sympile.runtime.host import cpu_fingerprint

CHILD = """
import json, sys
import numpy as np
import sympile, sympile.tensor as st
x, y = st.dvectors("x", "y")
f = sympile.function([x, y], st.exp(-x * x / 2) * st.sin(y) + st.log1p(y * y))
a, b = np.linspace(-3, 3, 101), np.linspace(0, 5, 101)
got = f(a, b)
want = np.exp(-a * a / 2) * np.sin(b) + np.log1p(b * b)
print(json.dumps({"llvm": "llvmlite.binding" in sys.modules, "close": bool(np.allclose(got, want, rtol=1e-13))}))
"""


def _child(cache_dir, **env) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env={**os.environ, "SYMPILE_CACHE_DIR": str(cache_dir), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine() == "x86_64"), reason="objload is x86-64 Linux"
)
def test_new_process_with_warm_disk_cache_never_imports_llvm(tmp_path):
    first = _child(tmp_path)
    assert first == {"llvm": True, "close": True}  # compiled: LLVM was needed
    second = _child(tmp_path)
    assert second == {"llvm": False, "close": True}  # loaded from disk by objload
    forced = _child(tmp_path, SYMPILE_LOADER="llvm")
    assert forced == {"llvm": True, "close": True}  # LLVM's JIT still loads the same entry


def test_cpu_fingerprint_follows_model_and_flags(tmp_path):
    base = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 85\nflags\t\t: fpu sse2 avx2\n\nprocessor\t: 1\n"
    paths = {}
    for name, text in {
        "base": base,
        "same": base.replace("processor\t: 1\n", "processor\t: 1\nflags : other\n") + "cpu MHz : 1200\n",
        "mhz": base.replace("model\t\t: 85\n", "model\t\t: 85\ncpu MHz\t\t: 3100.2\n"),
        "flags": base.replace("avx2", "avx2 avx512f"),
        "model": base.replace(": 85", ": 106"),
        "noflags": "processor\t: 0\nmodel\t\t: 85\n",
    }.items():
        paths[name] = tmp_path / name
        paths[name].write_text(text)
    fp = {name: cpu_fingerprint(str(p)) for name, p in paths.items()}
    assert len(fp["base"]) == 32
    assert fp["same"] == fp["base"]  # only the first processor counts
    assert fp["mhz"] == fp["base"]  # the clock is not part of the target
    assert fp["flags"] != fp["base"] and fp["model"] != fp["base"]
    assert fp["noflags"] is None  # nothing to predict LLVM's answer from: the caller asks LLVM
    assert cpu_fingerprint(str(tmp_path / "missing")) is None
