"""PTX from IR with llvmlite's NVPTX target, and cubins from PTX with NVIDIA's ``ptxas``.

The PTX version is left to LLVM (sm_80 gets 7.0, sm_90 gets 7.8): an explicit version too low for the chip
aborts the process. ``ptxas`` is looked up in ``CUDA_HOME/bin``, then on ``PATH``, then in the pip wheel
``nvidia-cuda-nvcc`` (the ``cuda`` extra installs it).

>>> text = to_ptx('define ptx_kernel void @k() {\\n  ret void\\n}', "sm_80")
>>> ".entry k" in text
True
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass

import llvmlite.binding as llvm

from ..llvm.target import LLVMError
from .kernels import GPU_TRIPLE

_lock = threading.Lock()
ARCHS = ("sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90")


@functools.cache
def _initialize() -> None:
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()


@functools.cache
def target_machine(arch: str) -> llvm.TargetMachine:
    """The NVPTX TargetMachine for ``arch`` (e.g. ``sm_90``), opt level 3, built once per arch."""
    if not re.fullmatch(r"sm_\d{2,3}a?", arch):
        raise ValueError(f"arch must look like 'sm_80' or 'sm_90', got {arch!r}")
    _initialize()
    return llvm.Target.from_triple(GPU_TRIPLE).create_target_machine(cpu=arch, opt=3)


def to_ptx(ir_text: str, arch: str = "sm_80") -> str:
    """Parse, verify, optimize (O3) and emit PTX text for ``arch``; raises LLVMError on invalid IR."""
    tm = target_machine(arch)
    try:
        mod = llvm.parse_assembly(str(ir_text))
        mod.verify()
    except RuntimeError as exc:
        raise LLVMError(f"invalid LLVM IR: {exc}") from None
    mod.triple = GPU_TRIPLE
    mod.data_layout = str(tm.target_data)
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    with _lock:
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
        return tm.emit_assembly(mod)


def find_ptxas(environ=None, search_path: list | None = None) -> str | None:
    """The ``ptxas`` executable: ``$CUDA_HOME/bin`` (or ``$CUDA_PATH``), then ``PATH``, then the pip wheel
    ``nvidia-cuda-nvcc``, found under an ``nvidia`` folder of ``search_path`` (``sys.path``: site-packages):
    ``nvidia/cu13/bin/ptxas`` (the CUDA 13 wheels, newest ``cuNN`` first), ``nvidia/cuda_nvcc/bin/ptxas``
    (``nvidia-cuda-nvcc-cu12``). ``environ`` defaults to ``os.environ``.

    >>> find_ptxas() is None or find_ptxas().endswith("ptxas")
    True
    >>> find_ptxas(environ={}, search_path=[])  # nothing to look in
    """
    env = os.environ if environ is None else environ
    home = env.get("CUDA_HOME") or env.get("CUDA_PATH")
    if home and _executable(os.path.join(home, "bin", "ptxas")):
        return os.path.join(home, "bin", "ptxas")
    found = shutil.which("ptxas", path=env["PATH"]) if env.get("PATH") else None
    if found:
        return found
    for root in sys.path if search_path is None else search_path:
        folder = os.path.join(root or ".", "nvidia")
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        versioned = sorted((n for n in names if re.fullmatch(r"cu\d+", n)), key=lambda n: -int(n[2:]))
        for name in [*versioned, "cuda_nvcc"]:
            path = os.path.join(folder, name, "bin", "ptxas")
            if _executable(path):
                return path
    return None


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


@dataclass(frozen=True)
class Assembled:
    """ptxas's result: the cubin and, per kernel, registers used and bytes of spill stores/loads."""

    cubin: bytes
    registers: dict
    spills: dict  # kernel -> (spill store bytes, spill load bytes)
    log: str

    @property
    def spilled(self) -> list[str]:
        """The kernels that spill registers."""
        return sorted(k for k, (st, ld) in self.spills.items() if st or ld)


class PtxasError(RuntimeError):
    """ptxas rejected the PTX (its message included) or is missing."""


def assemble(ptx: str, arch: str = "sm_80", ptxas: str | None = None) -> Assembled:
    """Assemble PTX to a cubin with ``ptxas -v`` and report registers and spills per kernel."""
    exe = ptxas or find_ptxas()
    if exe is None:
        raise PtxasError("ptxas not found: set CUDA_HOME, put ptxas on PATH, or pip install nvidia-cuda-nvcc")
    with tempfile.TemporaryDirectory(prefix="sympile-ptx") as tmp:
        src, dst = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
        with open(src, "w") as f:
            f.write(ptx)
        proc = subprocess.run([exe, "-v", f"-arch={arch}", src, "-o", dst], capture_output=True, text=True)
        if proc.returncode:
            raise PtxasError(f"ptxas -arch={arch} failed:\n{proc.stderr}")
        with open(dst, "rb") as f:
            cubin = f.read()
    log = proc.stderr + proc.stdout
    registers, spills, current = {}, {}, None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line) or re.search(r"Function properties for (\S+)", line)
        if m:
            current = m.group(1)
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and current:
            spills[current] = (int(m.group(1)), int(m.group(2)))
        m = re.search(r"Used (\d+) registers", line)
        if m and current:
            registers[current] = int(m.group(1))
    return Assembled(cubin, registers, spills, log)


__all__ = ["ARCHS", "Assembled", "PtxasError", "assemble", "find_ptxas", "target_machine", "to_ptx"]
