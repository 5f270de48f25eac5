"""A new process whose code is in the disk cache loads it without LLVM: the host is identified by the CPUID leaves
LLVM reads (runtime/host.py) and the object is mapped by our own loader (runtime/objload.py)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from sympile.runtime import host
from sympile.runtime.host import cpu_fingerprint, cpuid

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


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.machine() == "x86_64"), reason="x86-64 Linux")
def test_new_process_with_warm_disk_cache_never_imports_llvm(tmp_path):
    first = _child(tmp_path)
    assert first == {"llvm": True, "close": True}  # compiled: LLVM was needed
    second = _child(tmp_path)
    assert second == {"llvm": False, "close": True}  # loaded from disk by objload
    forced = _child(tmp_path, SYMPILE_LOADER="llvm")
    assert forced == {"llvm": True, "close": True}  # LLVM's JIT still loads the same entry


X86_LINUX = sys.platform.startswith("linux") and platform.machine() == "x86_64"


def _proc_cpuinfo() -> dict:
    fields = {}
    with open("/proc/cpuinfo") as f:
        for line in f.read().split("\n\n", 1)[0].splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


@pytest.mark.skipif(not X86_LINUX, reason="the CPUID stub is x86-64 Linux")
def test_cpuid_agrees_with_what_the_kernel_reports():
    info = _proc_cpuinfo()
    _, ebx, ecx, edx = cpuid(0)
    assert b"".join(r.to_bytes(4, "little") for r in (ebx, edx, ecx)).decode() == info["vendor_id"]
    eax = cpuid(1)[0]
    family = (eax >> 8) & 0xF
    model = (eax >> 4) & 0xF
    if family in (6, 15):
        model += ((eax >> 16) & 0xF) << 4
    family += (eax >> 20) & 0xFF if family == 15 else 0
    assert (family, model) == (int(info["cpu family"]), int(info["model"]))
    flags = set(info["flags"].split())
    bits = {"sse2": cpuid(1)[3] >> 26, "avx": cpuid(1)[2] >> 28, "avx2": cpuid(7)[1] >> 5, "avx512f": cpuid(7)[1] >> 16}
    for name, bit in bits.items():
        assert bool(bit & 1) == (name in flags), name


@pytest.mark.skipif(not X86_LINUX, reason="the CPUID stub is x86-64 Linux")
def test_cpu_fingerprint_is_stable_and_differs_from_process_to_process_only_with_the_cpu():
    fp = cpu_fingerprint()
    assert len(fp) == 32
    code = "import sympile.runtime.host as h; print(h.cpu_fingerprint())"
    others = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
              for _ in range(2)}  # fmt: skip
    assert others == {fp}


def test_cpu_fingerprint_is_none_where_the_stub_cannot_run(monkeypatch):
    monkeypatch.setattr(host.platform, "machine", lambda: "aarch64")
    host.cpu_fingerprint.cache_clear()
    try:
        assert host.cpu_fingerprint() is None
    finally:
        monkeypatch.undo()
        host.cpu_fingerprint.cache_clear()
