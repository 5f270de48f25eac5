"""runtime/objload.py: our ELF object loader, checked bit for bit against llvmlite's JIT and against numpy."""

import ctypes
import platform
import struct
import subprocess
import sys

import numpy as np
import pytest

if platform.machine() not in ("x86_64", "AMD64"):
    pytest.skip("the object loader handles x86-64 objects only", allow_module_level=True)

import sympile
import sympile.tensor as st
from sympile.compiler.llvm import target as llvm_target
from sympile.runtime import objload
from sympile.runtime.objload import LoadedObject, UnsupportedObject, load_object, object_symbols

KERNEL = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
N = 1003  # not a multiple of any vector width: the loop tails run too
FAR = 0x100000000000  # a placement hint 16 TiB up, > 2 GiB from every shared library (which live near 0x7f...)


@pytest.fixture
def far(monkeypatch):
    """Objects mapped far from libm: 32-bit calls to it need stubs, 32-bit data references overflow."""
    monkeypatch.setattr(objload, "_mmap_hint", FAR)


def _libm(name: str) -> int:
    return ctypes.cast(getattr(ctypes.CDLL("libm.so.6"), name), ctypes.c_void_p).value


@pytest.fixture(scope="module")
def small_tm():
    """A host TargetMachine with the small code model (the cached objects use the large one)."""
    llvm = llvm_target.llvm
    llvm_target.host_target_machine()  # initializes the native target
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm_target.host_features(), opt=3, reloc="pic", codemodel="small"
    )


def _object(ir: str, tm=None) -> bytes:
    mod = llvm_target.parse_and_verify(ir)
    return llvm_target.emit_object(mod) if tm is None else bytes(tm.emit_object(mod))


def _graph_objects(inputs, outputs, small_tm) -> dict[str, bytes]:
    """The graph's kernels as objects for both code models (the large one exactly as the disk cache holds)."""
    ir = sympile.emit(inputs, outputs)
    large = sympile.emit(inputs, outputs, target="object")
    return {"large": large, "small": _object(ir, small_tm)}


def _call(address: int, arrays: list[np.ndarray], start: int = 0, stop: int = N) -> int:
    words = (ctypes.c_int64 * len(arrays))(*[a.ctypes.data for a in arrays])
    return KERNEL(address)(start, stop, ctypes.addressof(words))


def _run_both(obj: bytes, entry: str, arrays: list[np.ndarray]) -> np.ndarray:
    """Call ``entry`` as loaded by us and by llvmlite on copies of ``arrays``; they must agree bit for bit.
    Returns our copies' last array (the output)."""
    syms = object_symbols(obj)
    assert entry in syms
    ours = load_object(obj, syms)
    theirs = llvm_target.load_object(obj, syms)
    mine = [a.copy() for a in arrays]
    ref = [a.copy() for a in arrays]
    assert _call(ours.address(entry), mine) == _call(theirs.address(entry), ref) == 0
    for a, b in zip(mine, ref):
        assert a.tobytes() == b.tobytes()
    return mine[-1]


def _entry(obj: bytes, suffix: str) -> str:
    (name,) = [s for s in object_symbols(obj) if s.endswith(suffix)]
    return name


@pytest.mark.parametrize("model", ["large", "small"])
def test_w1_float64_transcendentals(model, small_tm):
    x, y, z = st.dvector("x"), st.dvector("y"), st.dvector("z")
    obj = _graph_objects([x, y, z], st.exp(-x * x / 2) * st.sin(y) + st.log1p(z * z), small_tm)[model]
    rng = np.random.default_rng(1)
    xs, ys, zs = rng.standard_normal((3, N)) * 3
    out = _run_both(obj, _entry(obj, "_c"), [xs, ys, zs, np.zeros(N)])
    np.testing.assert_allclose(out, np.exp(-xs * xs / 2) * np.sin(ys) + np.log1p(zs * zs), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("model", ["large", "small"])
def test_float32_transcendentals(model, small_tm):
    x, y = st.fvector("x"), st.fvector("y")
    obj = _graph_objects([x, y], st.tanh(x) * st.exp(y) + st.sin(x) - st.log1p(y * y), small_tm)[model]
    rng = np.random.default_rng(2)
    xs, ys = (rng.standard_normal((2, N)) * 2).astype(np.float32)
    out = _run_both(obj, _entry(obj, "_c"), [xs, ys, np.zeros(N, np.float32)])
    ref = np.tanh(xs) * np.exp(ys) + np.sin(xs) - np.log1p(ys * ys)
    np.testing.assert_allclose(out, ref, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("model", ["large", "small"])
def test_integer_kernel(model, small_tm):
    a, b = st.lvector("a"), st.lvector("b")
    obj = _graph_objects([a, b], a * b - 3 * a + abs(b), small_tm)[model]
    rng = np.random.default_rng(3)
    av, bv = rng.integers(-1000, 1000, (2, N))
    out = _run_both(obj, _entry(obj, "_c"), [av, bv, np.zeros(N, np.int64)])
    np.testing.assert_array_equal(out, av * bv - 3 * av + np.abs(bv))


@pytest.mark.parametrize("model", ["large", "small"])
def test_reduction(model, small_tm):
    x = st.dvector("x")
    obj = _graph_objects([x], st.exp(st.sin(x)).sum(), small_tm)[model]
    xs = np.random.default_rng(4).standard_normal(N)
    out = np.zeros(1)
    syms = object_symbols(obj)
    ours, theirs = load_object(obj, syms), llvm_target.load_object(obj, syms)
    entry = _entry(obj, "_r")
    results = []
    for lib in (ours, theirs):
        out = np.zeros(1)
        # words: input, output, the reduced extent, the input's element stride (see _ReduceStep._reduce)
        words = (ctypes.c_int64 * 4)(xs.ctypes.data, out.ctypes.data, N, 1)
        assert KERNEL(lib.address(entry))(0, 1, ctypes.addressof(words)) == 0
        results.append(out[0])
    assert results[0] == results[1]
    assert results[0] == pytest.approx(np.exp(np.sin(xs)).sum(), rel=1e-12)


def test_several_kernels_in_one_object(small_tm):
    x, y = st.dvector("x"), st.dvector("y")
    outputs = [st.exp(x) * y, st.tanh(x - y).sum(), st.log1p(x * x) + st.cos(y).max()]
    for obj in _graph_objects([x, y], outputs, small_tm).values():
        entries = [s for s in object_symbols(obj) if s.endswith("_c")]
        assert len(entries) >= 2
        rng = np.random.default_rng(5)
        for entry in entries:
            # every buffer has room for any input or the output of any of these kernels (8-byte elements): each
            # kernel reads its inputs and writes one of them; all must agree bit for bit afterwards
            _run_both(obj, entry, list(rng.standard_normal((4, N))))
        assert len([s for s in object_symbols(obj) if s.endswith("_r")]) >= 2


COUNTER_IR = """
@g = global i64 5
@table = private unnamed_addr constant [4 x i64] [i64 10, i64 20, i64 30, i64 40]

define i64 @bump() {
  %v = load i64, ptr @g
  %n = add i64 %v, 1
  store i64 %n, ptr @g
  ret i64 %n
}

define i64 @lookup(i64 %i) {
  %p = getelementptr [4 x i64], ptr @table, i64 0, i64 %i
  %v = load i64, ptr %p
  ret i64 %v
}
"""


@pytest.mark.parametrize("model", ["large", "small"])
def test_writable_global_and_constant_table(model, small_tm):
    obj = _object(COUNTER_IR, small_tm if model == "small" else None)
    bump_type = ctypes.CFUNCTYPE(ctypes.c_int64)
    lookup_type = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
    lib = load_object(obj, ["bump", "lookup"])
    bump = bump_type(lib.address("bump"))
    assert [bump(), bump(), bump()] == [6, 7, 8]
    assert [lookup_type(lib.address("lookup"))(i) for i in range(4)] == [10, 20, 30, 40]
    again = load_object(obj, ["bump"])  # a second load is a fresh copy of the data
    assert bump_type(again.address("bump"))() == 6
    assert bump() == 9


EXTERNAL_IR = """
declare double @cos(double)
declare double @pow(double, double)

define double @f(double %x) {
  %c = call double @cos(double %x)
  %p = call double @pow(double %c, double 3.0)
  ret double %p
}
"""
# llvmlite's JIT refuses a missing weak symbol; we resolve it to 0 as a static linker does
WEAK_IR = """
@missing = extern_weak global i8

define ptr @weak_address() {
  ret ptr @missing
}
"""


@pytest.mark.parametrize("placement", ["near", "far"])
@pytest.mark.parametrize("model", ["large", "small"])
def test_external_libm_calls_and_weak_symbol(model, placement, small_tm, monkeypatch):
    # not optimized: the calls stay calls (in the small model PLT32 calls to libm: placed far, through stubs)
    obj = _object(EXTERNAL_IR, small_tm if model == "small" else None)
    if placement == "far":
        monkeypatch.setattr(objload, "_mmap_hint", FAR)
    lib = load_object(obj, ["f"])
    assert (abs(lib.base - _libm("cos")) > 2**31) == (placement == "far")
    f = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(lib.address("f"))
    for x in (0.0, 0.5, 1.0, -2.5, 10.0):
        assert f(x) == np.cos(x) ** 3 or f(x) == pytest.approx(np.cos(x) ** 3, rel=1e-15)
    theirs = llvm_target.load_object(obj, ["f"])
    g = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(theirs.address("f"))
    assert all(f(x) == g(x) for x in np.linspace(-4, 4, 17))
    weak = load_object(_object(WEAK_IR, small_tm if model == "small" else None), ["weak_address"])
    assert ctypes.CFUNCTYPE(ctypes.c_void_p)(weak.address("weak_address"))() is None


# Relocation types the compiled kernels do not happen to use, written with the assembler's .reloc directive.
RELOC_ASM = r"""
.data
.p2align 4
.globl blob
blob:
.reloc ., R_X86_64_64, target+8
.quad 0
.reloc ., R_X86_64_PC64, target
.quad 0
.reloc ., R_X86_64_GOTPC64, _GLOBAL_OFFSET_TABLE_
.quad 0
.reloc ., R_X86_64_GOTOFF64, target
.quad 0
.reloc ., R_X86_64_GOT64, target
.quad 0
.reloc ., R_X86_64_GOTPCREL64, cos
.quad 0
.reloc ., R_X86_64_PLTOFF64, cos
.quad 0
.reloc ., R_X86_64_GOTPCREL, target
.long 0
.reloc ., R_X86_64_GOTPC32, _GLOBAL_OFFSET_TABLE_
.long 0
.reloc ., R_X86_64_GOTPCRELX, cos
.long 0
.reloc ., R_X86_64_32, absval
.long 0
.reloc ., R_X86_64_32S, absneg
.long 0
.reloc ., R_X86_64_PC32, target-4
.long 0
target:
.quad 42
.set absval, 0x12345678
.set absneg, -5
"""


def _asm_object(asm: str) -> bytes:
    llvm_target.llvm.initialize_native_asmparser()  # module asm needs it (LLVM aborts otherwise)
    return _object("".join(f'module asm "{line}"\n' for line in asm.strip().splitlines()))


def test_relocation_types_from_assembly():
    lib = load_object(_asm_object(RELOC_ASM), ["blob"])
    b = lib.address("blob")
    target = b + 0x50
    q = struct.unpack("<7q", ctypes.string_at(b, 56))
    words = struct.unpack("<iiiIii", ctypes.string_at(b + 56, 24))
    word_at = lambda address: ctypes.c_uint64.from_address(address).value  # noqa: E731
    got = b + 16 + q[2]
    cos = _libm("cos")
    assert ctypes.c_int64.from_address(target).value == 42
    assert q[0] == target + 8
    assert b + 8 + q[1] == target
    assert got + q[3] == target
    assert word_at(got + q[4]) == target
    assert word_at(b + 40 + q[5]) == cos
    assert got + q[6] == cos
    assert word_at(b + 56 + words[0]) == target
    assert b + 60 + words[1] == got
    assert word_at(b + 64 + words[2]) == cos
    assert words[3:5] == (0x12345678, -5)
    assert b + 76 + words[5] == target - 4


def test_overflowing_fields_are_refused(far):
    # a 32-bit absolute address of a mapping above 4 GiB; a 32-bit PC-relative reference to data in libm
    for asm in (".data\n.globl d\nd:\n.reloc ., R_X86_64_32, d\n.long 0", ".data\n.globl d\nd:\n.long signgam - ."):
        with pytest.raises(UnsupportedObject, match="does not fit"):
            load_object(_asm_object(asm), ["d"])
        assert FAR not in _maps()  # unmapped again, never made executable


def _maps() -> dict[int, str]:
    """Start address -> permissions of this process's mappings."""
    found = {}
    with open("/proc/self/maps") as f:
        for line in f:
            span, perms = line.split()[:2]
            found[int(span.split("-")[0], 16)] = perms
    return found


def test_page_protections_and_unmapping():
    obj = _object(COUNTER_IR)
    lib = load_object(obj, ["bump", "lookup"])
    assert isinstance(lib, LoadedObject) and lib.symbols == ("bump", "lookup")
    perms = _maps()
    pages = [perms.get(lib.base + off) for off in range(0, lib.size, 4096)]
    # code first (read+execute), then constants and the GOT (read only), then writable data; nothing is both
    # writable and executable
    assert pages[0] == "r-xp"
    assert "r--p" in pages and "rw-p" in pages
    assert not any(p and "w" in p and "x" in p for p in pages)
    base = lib.base
    with pytest.raises(KeyError, match="nope"):
        lib.address("nope")
    del lib
    assert base not in _maps()


def test_unsupported_objects():
    obj = _object(COUNTER_IR)
    with pytest.raises(UnsupportedObject, match="not an ELF"):
        load_object(b"garbage, not an object at all" * 4, ["bump"])
    with pytest.raises(UnsupportedObject):
        load_object(b"", ["bump"])
    for cut in (20, 64, len(obj) // 2, len(obj) - 1):
        with pytest.raises(UnsupportedObject):
            load_object(obj[:cut], ["bump"])
    arm = bytearray(obj)
    arm[18:20] = (183).to_bytes(2, "little")  # EM_AARCH64
    with pytest.raises(UnsupportedObject, match="x86-64"):
        load_object(bytes(arm), ["bump"])
    shared = bytearray(obj)
    shared[16:18] = (3).to_bytes(2, "little")  # ET_DYN
    with pytest.raises(UnsupportedObject, match="relocatable"):
        load_object(bytes(shared), ["bump"])
    with pytest.raises(UnsupportedObject, match="not defined"):
        load_object(obj, ["bump", "no_such_function"])
    missing = _object(
        "declare double @sympile_no_such_symbol(double)\n"
        "define double @h(double %x) {\n"
        "  %r = call double @sympile_no_such_symbol(double %x)\n"
        "  ret double %r\n"
        "}\n"
    )
    with pytest.raises(UnsupportedObject, match="sympile_no_such_symbol"):
        load_object(missing, ["h"])
    tls = _object("@t = thread_local global i64 1\ndefine i64 @get() {\n  %v = load i64, ptr @t\n  ret i64 %v\n}\n")
    with pytest.raises(UnsupportedObject):
        load_object(tls, ["get"])
    common = _object("@c = common global i64 0\ndefine ptr @addr() {\n  ret ptr @c\n}\n")
    with pytest.raises(UnsupportedObject, match="common"):
        load_object(common, ["addr"])
    for reloc in ("R_X86_64_SIZE32", "R_X86_64_TPOFF32", "R_X86_64_DTPOFF32"):
        with pytest.raises(UnsupportedObject, match="relocation type"):
            load_object(_asm_object(f".data\n.globl d\nd:\n.reloc ., {reloc}, d\n.long 0"), ["d"])


def test_import_does_not_load_llvmlite():
    code = "import sys, sympile.runtime.objload; assert 'llvmlite' not in sys.modules, 'llvmlite imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
