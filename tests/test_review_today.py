"""Regression tests from the review of the ELF loader, the host fingerprint and the CUDA shared-variable code."""

from __future__ import annotations

import ctypes
import platform
import threading
import time

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st
from sympile.runtime import cpu_backend, objload
from sympile.runtime.objload import LoadedObject, MappingFailed, UnsupportedObject, load_object

x86_64 = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the loader is x86-64 only")

COUNTER_IR = """
@g = global i64 5

define i64 @bump() {
  %v = load i64, ptr @g
  %n = add i64 %v, 1
  store i64 %n, ptr @g
  ret i64 %n
}
"""


def _object(ir: str) -> bytes:
    from sympile.compiler.llvm import target as llvm_target  # noqa: PLC0415

    return llvm_target.emit_object(llvm_target.parse_and_verify(ir))


def _asm_object(asm: str) -> bytes:
    """An object from assembly lines (module asm); ``"`` is written ``\\22`` as LLVM IR strings need."""
    from sympile.compiler.llvm import target as llvm_target  # noqa: PLC0415

    llvm_target.llvm.initialize_native_asmparser()
    return _object("".join(f'module asm "{line}"\n' for line in asm.strip().splitlines()))


def _maps() -> set[int]:
    with open("/proc/self/maps") as f:
        return {int(line.split("-")[0], 16) for line in f}


# --- objload ------------------------------------------------------------------------------------------------------
@x86_64
def test_section_aligned_beyond_a_page_is_refused():
    # the mapping is only page-aligned: a section asking for 16 KiB alignment was placed at base + 4096*k and
    # its symbol misaligned; now refused, so the caller falls back to LLVM's JIT
    asm = r"""
.text
.globl f
f:
 ret
.section .rodata.big,\22a\22
.p2align 14
.globl big
big:
 .quad 7
"""
    obj = _asm_object(asm)
    with pytest.raises(UnsupportedObject, match="aligned to 16384"):
        load_object(obj, ["f", "big"])
    jit = cpu_backend._load_object(obj, ["f", "big"])
    assert not isinstance(jit, LoadedObject)
    assert jit.address("big") % (1 << 14) == 0
    assert ctypes.c_int64.from_address(jit.address("big")).value == 7


@x86_64
def test_bss_and_section_symbol_with_addend():
    asm = r"""
.text
.globl f
f:
 ret
.bss
.globl zz
.p2align 3
zz:
 .zero 64
.data
.globl ptr
ptr:
 .quad .bss+8
"""
    lib = load_object(_asm_object(asm), ["f", "zz", "ptr"])
    assert ctypes.string_at(lib.address("zz"), 64) == bytes(64)
    assert ctypes.c_uint64.from_address(lib.address("ptr")).value == lib.address("zz") + 8


@x86_64
def test_refused_executable_mapping_falls_back_to_llvm(monkeypatch):
    # a hardened kernel (SELinux deny_execmem, PaX) refuses PROT_EXEC: an OSError escaped _load_object before
    libc = objload._get_libc()
    real = libc.mprotect

    def deny_exec(address, size, prot):
        if prot & 4:
            ctypes.set_errno(13)
            return -1
        return real(address, size, prot)

    monkeypatch.setattr(libc, "mprotect", deny_exec)
    obj = _object(COUNTER_IR)
    before = _maps()
    with pytest.raises(MappingFailed) as info:
        load_object(obj, ["bump"])
    assert isinstance(info.value, OSError) and info.value.errno == 13
    assert _maps() <= before  # unmapped again
    jit = cpu_backend._load_object(obj, ["bump"])
    assert not isinstance(jit, LoadedObject)
    assert ctypes.CFUNCTYPE(ctypes.c_int64)(jit.address("bump"))() == 6


@x86_64
def test_failed_mmap_is_unsupported(monkeypatch):
    libc = objload._get_libc()
    monkeypatch.setattr(libc, "mmap", lambda *args: 2**64 - 1)  # MAP_FAILED
    with pytest.raises(UnsupportedObject, match="mmap failed"):
        load_object(_object(COUNTER_IR), ["bump"])


def test_concurrent_symbol_lookups_wait_for_libm(monkeypatch):
    # a process without libm in its global scope (a statically linked Python): while one thread loads libm,
    # another looking up a libm function found _libm_tried set and cached the function as missing, for good
    libc = objload._Libc()
    real_dlsym, first = libc.dlsym, libc.handles[0]
    monkeypatch.setattr(libc, "dlsym", lambda handle, name: None if handle == first else real_dlsym(handle, name))
    real_cdll = ctypes.CDLL

    def slow_cdll(name, *args, **kwargs):
        time.sleep(0.3)
        return real_cdll(name, *args, **kwargs)

    monkeypatch.setattr(objload.ctypes, "CDLL", slow_cdll)
    found = {}
    first_thread = threading.Thread(target=lambda: found.setdefault("missing", libc.resolve("sympile_no_such")))
    first_thread.start()
    time.sleep(0.1)  # the first thread is loading libm now
    found["cos"] = libc.resolve("cos")
    first_thread.join()
    assert found["missing"] is None
    assert found["cos"] == ctypes.cast(real_cdll("libm.so.6").cos, ctypes.c_void_p).value
    assert libc.resolve("cos") == found["cos"]


# --- shared variables through the CUDA backend (fake driver) --------------------------------------------------------
def _cuda(inputs, outputs, updates=None, givens=None):
    from test_cuda_ptx import FakeDriver  # noqa: PLC0415

    from sympile.runtime.cuda_backend import use_driver  # noqa: PLC0415

    driver = FakeDriver()
    with use_driver(driver):
        f = sp.function(inputs, outputs, updates=updates, givens=givens, backend="cuda")
    driver.simulate(f.program.schedule.specs)
    return f


def test_cuda_shared_semantics_that_held():
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal((3, 3))
    w, x = sp.shared(w0.copy()), st.dvector("x")
    # an update that is a view (a transpose) of the device value, then read by a matmul through its strides
    f = _cuda([x], x @ w, updates={w: w.T * 2.0})
    g = _cuda([x], (w * x).sum(), updates={w: w.T})
    g(np.ones(3))
    np.testing.assert_allclose(w.get_value(), w0.T)
    np.testing.assert_allclose(f(np.arange(3.0)), np.arange(3.0) @ w0.T)
    np.testing.assert_allclose(w.get_value(), w0 * 2.0)
    # a failing call changes no shared value
    v = sp.shared(np.ones(3))
    h = _cuda([x], (v + x).sum(), updates={v: v + x, w: w + 1.0})
    with pytest.raises(Exception, match="broadcast"):
        h(np.ones(4))
    np.testing.assert_allclose(v.get_value(), 1.0)
    np.testing.assert_allclose(w.get_value(), w0 * 2.0)
    # alternating with the CPU backend, and givens that replace a shared variable by another
    cpu = sp.function([x], (v * x).sum(), updates={v: v * 2.0}, backend="cpu")
    h(np.ones(3))
    assert cpu(np.ones(3)) == 6.0
    k = _cuda([x], (w[0] * x).sum(), givens={w: sp.shared(np.ones((3, 3)))}, updates={v: v + 1.0})
    assert k(np.ones(3)) == 3.0
    np.testing.assert_allclose(v.get_value(), 5.0)


@pytest.mark.parametrize("borrow", [False, True])
def test_shared_value_in_foreign_byte_order(borrow):
    # shared() stored a big-endian array as it was: the CPU kernels and the GPU upload read its bytes as native
    value = np.arange(4.0).astype(">f8")
    w, x = sp.shared(value, borrow=borrow), st.dvector("x")
    assert w.get_value().dtype == np.float64 and w.get_value().dtype.isnative
    want = np.arange(4.0) * 2.0
    np.testing.assert_array_equal(sp.function([x], x * w, backend="cpu")(np.full(4, 2.0)), want)
    np.testing.assert_array_equal(_cuda([x], x * w)(np.full(4, 2.0)), want)
