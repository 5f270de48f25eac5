"""The one gate module for llvmlite.binding: host target machine, parse/verify, O3 optimization, emission, JIT.

Everything else in sympile that needs LLVM's C++ side goes through here, so the llvmlite quirks (0.50 / LLVM 22:
no ``llvm.initialize()``, new pass manager only, ORC LLJIT) live in one place.

>>> mod = parse_and_verify('define i32 @one() {\\n  ret i32 1\\n}')
>>> optimize(mod)  # doctest: +ELLIPSIS
<...>
>>> import ctypes
>>> jit = load_ir(str(mod), ["one"])
>>> ctypes.CFUNCTYPE(ctypes.c_int32)(jit.address("one"))()
1
"""

from __future__ import annotations

import functools
import itertools
import threading
from dataclasses import dataclass

import llvmlite.binding as llvm

_lock = threading.Lock()
_library_ids = itertools.count()


class LLVMError(RuntimeError):
    """Raised when LLVM rejects IR (parse or verification failure); carries LLVM's own message."""


@functools.cache
def _initialize() -> None:
    # llvmlite >= 0.45 initializes the core itself and raises on llvm.initialize().
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@functools.cache
def host_features() -> str:
    """The host CPU features, plus ``-prefer-256-bit`` where AVX-512 exists.

    LLVM's default tuning for AVX-512 Intel cores vectorizes to 256 bits; 512-bit vectors measured 2x faster on
    the math library loops here (exp over 10M doubles: 28 ms -> 13.5 ms).
    """
    _initialize()
    features = llvm.get_host_cpu_features().flatten()
    if "+avx512f" in features.split(","):
        features += ",-prefer-256-bit"
    return features


@functools.cache
def host_target_machine() -> llvm.TargetMachine:
    """The host's TargetMachine (host CPU name and features, opt level 3), built once.

    >>> host_target_machine().triple  # doctest: +ELLIPSIS
    '...'
    """
    _initialize()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    # Without the host CPU name and features LLVM assumes baseline x86-64 and vectorizes to 2 doubles only.
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(),
        features=host_features(),
        opt=3,
        reloc="pic",
        codemodel="jitdefault",
    )


def target_key() -> tuple[str, str, str]:
    """(triple, cpu, features) of the host target: the target part of a cache key.

    >>> len(target_key())
    3
    """
    _initialize()
    return (llvm.get_process_triple(), llvm.get_host_cpu_name(), host_features())


def parse_and_verify(ir_text: str) -> llvm.ModuleRef:
    """Parse IR text and verify it; raises LLVMError (never aborts) on invalid IR.

    Verification must come before any optimization: LLVM's passes may crash the whole process on invalid IR.

    >>> parse_and_verify("define void @f() {\\n  ret void\\n}").get_function("f").name
    'f'
    """
    _initialize()
    try:
        mod = llvm.parse_assembly(str(ir_text))
        mod.verify()
    except RuntimeError as exc:
        raise LLVMError(f"invalid LLVM IR: {exc}") from None
    mod.triple = host_target_machine().triple
    mod.data_layout = str(host_target_machine().target_data)
    return mod


def optimize(mod: llvm.ModuleRef, speed_level: int = 3) -> llvm.ModuleRef:
    """Run the new-pass-manager pipeline at O3 with loop and SLP vectorization on ``mod`` (in place); returns it.

    >>> optimize(parse_and_verify("define void @f() {\\n  ret void\\n}"))  # doctest: +ELLIPSIS
    <...>
    """
    tm = host_target_machine()
    pto = llvm.create_pipeline_tuning_options(speed_level=speed_level)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    with _lock:
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
    return mod


def emit_object(mod: llvm.ModuleRef) -> bytes:
    """ELF object bytes of an (optimized) module for the host.

    >>> emit_object(parse_and_verify("define void @f() {\\n  ret void\\n}"))[:4]
    b'\\x7fELF'
    """
    with _lock:
        return bytes(host_target_machine().emit_object(mod))


def emit_asm(mod: llvm.ModuleRef) -> str:
    """Assembly text of an (optimized) module for the host.

    >>> "ret" in emit_asm(parse_and_verify("define void @f() {\\n  ret void\\n}"))
    True
    """
    with _lock:
        return host_target_machine().emit_assembly(mod)


@functools.cache
def _lljit() -> llvm.LLJIT:
    _initialize()
    # The LLJIT gets its own TargetMachine: LLVM JITs take ownership of the one they are given.
    return llvm.create_lljit_compiler()


@dataclass(frozen=True)
class JITLibrary:
    """A linked JIT library: symbol addresses, valid as long as this object (its resource tracker) lives."""

    tracker: object
    symbols: tuple[str, ...]

    def address(self, name: str) -> int:
        """Address of an exported symbol."""
        return self.tracker[name]


def _link(add, payload, symbols: list[str]) -> JITLibrary:
    builder = llvm.JITLibraryBuilder()
    add(builder, payload)
    builder.add_current_process()  # libm and libc symbols resolve from the running process
    for name in symbols:
        builder.export_symbol(name)
    with _lock:
        tracker = builder.link(_lljit(), f"sympile_lib{next(_library_ids)}")
    return JITLibrary(tracker, tuple(symbols))


def load_ir(ir_text: str, symbols: list[str]) -> JITLibrary:
    """JIT-compile IR text (compiled at the LLJIT's default level; optimize first) and export ``symbols``."""
    return _link(lambda b, p: b.add_ir(p), str(ir_text), symbols)


def load_object(obj: bytes, symbols: list[str]) -> JITLibrary:
    """Load object bytes from emit_object (e.g. from the disk cache) and export ``symbols``."""
    return _link(lambda b, p: b.add_object_img(p), bytes(obj), symbols)
