"""What identifies the host CPU for the disk cache, read without loading LLVM: the CPUID leaves LLVM reads.

LLVM derives the target of the code it generates (CPU name and features) from the CPUID instruction and from
XGETBV (which register states the OS saves: AVX-512 code must not run where the OS does not save zmm registers).
:func:`cpu_fingerprint` hashes exactly those values, read by a 40-byte machine-code stub (mapped with objload's
libc helpers), so a new process finds its cached code, and loads it, without importing ``llvmlite.binding``
(~25 ms). ``/proc/cpuinfo`` is not enough: the kernel does not name every feature LLVM uses. Where the stub
cannot run (not x86-64, or executable mappings refused), :func:`cpu_fingerprint` returns ``None`` and the caller
asks LLVM.

>>> fp = cpu_fingerprint()
>>> fp is None or len(fp) == 32
True
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import platform
import sys

#: ``void cpuid(u32 leaf, u32 subleaf, u32 out[4])`` (System V x86-64; rbx is callee-saved, so kept)
_CPUID = bytes.fromhex(
    "53"  # push rbx
    "89f8"  # mov eax, edi
    "89f1"  # mov ecx, esi
    "4989d0"  # mov r8, rdx
    "0fa2"  # cpuid
    "418900"  # mov [r8], eax
    "41895804"  # mov [r8+4], ebx
    "41894808"  # mov [r8+8], ecx
    "4189500c"  # mov [r8+12], edx
    "5b"  # pop rbx
    "c3"  # ret
)
#: ``u64 xgetbv(u32 register)``: only where CPUID.1:ECX.OSXSAVE says the instruction exists
_XGETBV = bytes.fromhex(
    "89f9"  # mov ecx, edi
    "0f01d0"  # xgetbv
    "48c1e220"  # shl rdx, 32
    "4809d0"  # or rax, rdx
    "c3"  # ret
)
#: (leaf, subleaf) that LLVM's getHostCPUName / getHostCPUFeatures read (llvm/lib/TargetParser/Host.cpp)
_LEAVES = ((0, 0), (1, 0), (7, 0), (7, 1), (0xD, 1), (0x14, 0), (0x19, 0), (0x24, 0))
_EXTENDED = ((0x80000000, 0), (0x80000001, 0), (0x80000008, 0))


class _Stubs:
    """The two stubs in one executable page (kept for the life of the process)."""

    def __init__(self):
        from .objload import _get_libc  # noqa: PLC0415  (its mmap/mprotect wrappers)

        libc = _get_libc()
        page = 4096
        base = libc.mmap(None, page, 3, 0x22, -1, 0)  # PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
        if base in (None, ctypes.c_void_p(-1).value):
            raise OSError("mmap failed")
        ctypes.memmove(base, _CPUID, len(_CPUID))
        ctypes.memmove(base + 64, _XGETBV, len(_XGETBV))
        if libc.mprotect(base, page, 5) != 0:  # PROT_READ|PROT_EXEC
            libc.munmap(base, page)
            raise OSError("mprotect failed")
        self.cpuid_fn = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p)(base)
        self.xgetbv_fn = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint32)(base + 64)


@functools.cache
def _stubs() -> _Stubs:
    return _Stubs()


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """``(eax, ebx, ecx, edx)`` of the CPUID instruction on this CPU (x86-64 only).

    >>> eax, ebx, ecx, edx = cpuid(0)  # the vendor string, e.g. GenuineIntel
    >>> len(b"".join(r.to_bytes(4, "little") for r in (ebx, edx, ecx)).decode())
    12
    """
    out = (ctypes.c_uint32 * 4)()
    _stubs().cpuid_fn(leaf, subleaf, ctypes.addressof(out))
    return tuple(out)


def xgetbv(register: int = 0) -> int:
    """The extended control register ``register`` (XCR0: the register states the OS saves); x86-64 only, and
    only where ``cpuid(1)[2]`` has bit 27 (OSXSAVE) set."""
    return _stubs().xgetbv_fn(register)


@functools.cache
def cpu_fingerprint() -> str | None:
    """A hash of what LLVM's host detection reads (CPUID leaves, XCR0), or ``None`` where it cannot be read."""
    if platform.machine().lower() not in ("x86_64", "amd64") or not sys.platform.startswith("linux"):
        return None
    try:
        max_leaf = cpuid(0)[0]
        max_extended = cpuid(0x80000000)[0]
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{sys.platform} {platform.machine()}".encode())
        for leaf, sub in _LEAVES + _EXTENDED:
            if leaf > (max_leaf if leaf < 0x80000000 else max_extended):
                continue  # (beyond the last leaf CPUID repeats another one: not a property of its own)
            eax, ebx, ecx, edx = cpuid(leaf, sub)
            if leaf == 1:
                ebx &= 0x00FFFFFF  # bits 24-31: the APIC id of the core this thread runs on
            elif leaf == 0x80000008:
                ecx = 0  # core counts and APIC id size: topology, not features
            h.update(f"{leaf:x}.{sub}:{eax:08x}{ebx:08x}{ecx:08x}{edx:08x};".encode())
        if cpuid(1)[2] >> 27 & 1:
            h.update(f"xcr0:{xgetbv(0):x}".encode())
        return h.hexdigest()
    except (OSError, AttributeError):
        return None  # executable mappings refused (a hardened kernel): LLVM identifies the host instead
