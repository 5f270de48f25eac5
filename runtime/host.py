"""What identifies the host CPU for the disk cache, read without loading LLVM.

LLVM derives the target (triple, CPU name, features) of the code it generates from the CPU itself; the operating
system reports the same facts (vendor, family, model, stepping, feature flags). Keying cached object code by those
lets a new process find its code, and load it, without importing ``llvmlite.binding`` (~25 ms). Where the OS
does not report them (no ``/proc/cpuinfo``), :func:`cpu_fingerprint` returns ``None`` and the caller asks LLVM.

>>> fp = cpu_fingerprint()
>>> fp is None or len(fp) == 32
True
"""

from __future__ import annotations

import functools
import hashlib
import platform
import sys

#: the /proc/cpuinfo fields LLVM's host detection depends on (x86: CPUID; arm64: implementer/part and features)
_FIELDS = ("vendor_id", "cpu family", "model", "model name", "stepping", "flags", "cpu implementer",
           "cpu architecture", "cpu variant", "cpu part", "cpu revision", "features", "isa")  # fmt: skip


@functools.cache
def cpu_fingerprint(path: str = "/proc/cpuinfo") -> str | None:
    """A hash of the machine type and the first CPU's identity and feature flags, or ``None`` if unknown."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 16)
    except OSError:
        return None
    first = text.split("\n\n", 1)[0]  # the first processor: they are alike on the machines we target
    fields = {}
    for line in first.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key in _FIELDS:
            fields[key] = " ".join(value.split())
    if "flags" not in fields and "features" not in fields:
        return None  # no feature list: LLVM's answer cannot be predicted from this
    h = hashlib.blake2b(digest_size=16)
    for part in (sys.platform, platform.machine(), *(f"{k}={fields[k]}" for k in sorted(fields))):
        h.update(part.encode() + b"\0")
    return h.hexdigest()
