"""``sympile.emit`` and ``Function.kernels``: the compiled kernels as IR, assembly and object bytes."""

from __future__ import annotations

import re

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st


def _fused_exp():
    x, y = st.dvectors("x", "y")
    return [x, y], st.exp(-x * x / 2) * y


def test_object_is_elf():
    inputs, out = _fused_exp()
    obj = sp.emit(inputs, out, target="object")
    assert isinstance(obj, bytes)
    assert obj[:4] == b"\x7fELF"


def test_ir_names_the_kernels_and_vectorizes_the_exp_loop():
    inputs, out = _fused_exp()
    ir = sp.emit(inputs, out)  # 'llvm-ir' is the default
    f = sp.function(inputs, out)
    assert f.kernels, "a fused elementwise graph compiles to at least one kernel"
    for k in f.kernels:
        # emit names the kernels exactly as the compiled function does, entry points included
        assert re.search(rf"define .*@{k.name}_c\(", ir), k.name
    assert re.search(r"<\d+ x double>", ir), "the contiguous exp loop should be vectorized"
    assert "call double @exp" not in ir, "the math library is inlined, not libm"


def test_asm_is_text_with_the_kernel_symbols():
    inputs, out = _fused_exp()
    asm = sp.emit(inputs, out, target="asm")
    f = sp.function(inputs, out)
    assert asm.strip()
    assert all(f"{k.name}_c" in asm for k in f.kernels)


def test_function_kernels_expose_ir_and_asm_and_still_compute():
    x = st.fvector("x")
    f = sp.function([x], st.tanh(x) + 1)
    (k,) = f.kernels
    assert k.name and k.name in k.llvm_ir and "define" in k.llvm_ir
    assert "float" in k.llvm_ir
    assert k.asm.strip()
    data = np.linspace(-3, 3, 11, dtype=np.float32)
    np.testing.assert_allclose(f(data), np.tanh(data) + 1, rtol=1e-6, atol=1e-6)  # 1 + tanh cancels near -3


def test_numpy_backend_has_no_kernels():
    x = st.dvector("x")
    assert sp.function([x], x + 1, backend="numpy").kernels == []


def test_emit_errors_name_the_problem():
    x, y = st.dvectors("x", "y")
    with pytest.raises(ValueError, match="unknown target 'wasm'"):
        sp.emit([x], x + 1, target="wasm")
    with pytest.raises(ValueError, match="missing input"):
        sp.emit([x], x + y)
    with pytest.raises(TypeError, match="list of variables"):
        sp.emit(x, x + 1)


def test_emit_runs_nothing_and_matches_unoptimized_names():
    x = st.dvector("x")
    # optimize=False keeps the graph as written: still one module with a kernel per elementwise node
    ir = sp.emit([x], st.exp(x) + 1, optimize=False)
    assert ir.count("define") >= 2


def test_emit_ptx_for_each_arch():
    x = st.fvector("x")
    for arch in ("sm_80", "sm_90"):
        ptx = sp.emit([x], st.exp(-x * x) + 1, target="ptx", arch=arch)
        assert f".target {arch}" in ptx
        assert ".entry" in ptx


def test_emit_arch_only_for_ptx():
    x = st.fvector("x")
    with pytest.raises(ValueError, match="arch"):
        sp.emit([x], x + 1, target="asm", arch="sm_90")
