"""The LLVM IR math library (compiler/llvm/mathlib.py) against numpy on >= 1M points per function and dtype.

Each (function, dtype) is a JIT-compiled loop over an array. The reference is numpy evaluated in long double
(80-bit on x86), so the error measured is ours, in ulps of the result dtype; erf/erfc have a long-double
oracle here (libm's erfc is itself up to 2 ulp off).
Run with ``-s`` to see the table of measured max ulp errors.
"""

from __future__ import annotations

import ctypes
import math
import re

import numpy as np
import pytest
from llvmlite import ir

from sympile.compiler.llvm import loops, mathlib, target

N = 1 << 20
MAX_ULP = 4.0
DTYPES = {np.float64: mathlib.F64, np.float32: mathlib.F32}
LD = np.longdouble
pytestmark = pytest.mark.skipif(np.finfo(LD).nmant < 60, reason="needs 80-bit long double for the reference")


TWO_OVER_SQRT_PI = LD("1.1283791670955125738961589031215451716881012586580")
SQRT_PI = LD("1.7724538509055160272981674833411451827975494561224")


def _erf_taylor(a: np.ndarray, terms: int) -> np.ndarray:
    """erf(a) for 0 <= a <= 2 in long double: 2/sqrt(pi) * sum (-1)^n a^(2n+1) / (n! (2n+1))."""
    s = a.astype(LD)
    z, term, total = s * s, s.copy(), s.copy()
    for n in range(1, terms):
        term = term * -z / n
        total = total + term / (2 * n + 1)
    return TWO_OVER_SQRT_PI * total


def _erfc_cf(a: np.ndarray, depth: int) -> np.ndarray:
    """erfc(a) for 2 <= a <= 40 in long double: exp(-a^2) / (sqrt(pi) (a + 1/2/(a + 1/(a + 3/2/(a + ...)))))."""
    c = a.astype(LD)
    t = c.copy()
    for k in range(depth, 0, -1):
        t = c + LD(k) / 2 / t
    a1 = np.round(a * 2.0**20) / 2.0**20  # a = a1 + a2 so that every product below is exact in long double
    a1l, a2l = a1.astype(LD), (a - a1).astype(LD)
    return np.exp(-a1l * a1l) * np.exp(-2 * a1l * a2l) * np.exp(-a2l * a2l) / (SQRT_PI * t)


def _erf_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(erf(|x|), erfc(|x|)) in long double, ~1e-18 relative (libm's erfc is up to ~2 ulp off: too coarse)."""
    a = np.abs(x.astype(np.float64))
    erf, erfc = np.full(a.shape, LD(1)), np.zeros(a.shape, dtype=LD)
    small = (a < 2) & (a >= 0.1)
    mid = (a >= 2) & (a <= 40)
    near = (a >= 2) & (a < 3)  # the fraction converges slowest near 2: depth 100 gives 1e-22 there, 40 from 3 on
    with np.errstate(all="ignore"):
        erf[small] = _erf_taylor(a[small], 48)
        tiny = a < 0.1  # 12 terms are plenty there
        erf[tiny] = _erf_taylor(a[tiny], 12)
        erfc[a < 2] = 1 - erf[a < 2]
        erfc[mid] = _erfc_cf(a[mid], 40)
        erfc[near] = _erfc_cf(a[near], 100)
        erf[mid] = 1 - erfc[mid]
    return erf, erfc


def _erf_ld(x: np.ndarray) -> np.ndarray:
    erf, _ = _erf_parts(x)
    return np.where(np.isnan(x), LD(np.nan), np.copysign(erf, x))


def _erfc_ld(x: np.ndarray) -> np.ndarray:
    _, erfc = _erf_parts(x)
    return np.where(np.isnan(x), LD(np.nan), np.where(x < 0, 2 - erfc, erfc))


def _softplus_ref(x):
    return np.logaddexp(LD(0), x)


def _sigmoid_ref(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


REFERENCES = {
    "exp": np.exp,
    "exp2": np.exp2,
    "expm1": np.expm1,
    "log": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "log1p": np.log1p,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "arcsin": np.arcsin,
    "arccos": np.arccos,
    "arctan": np.arctan,
    "arctan2": np.arctan2,
    "arcsinh": np.arcsinh,
    "arccosh": np.arccosh,
    "arctanh": np.arctanh,
    "erf": _erf_ld,
    "erfc": _erfc_ld,
    "pow": np.power,
    "sigmoid": _sigmoid_ref,
    "softplus": _softplus_ref,
}

F32_EXP_EDGES = [88.72283935546875, -103.97207708, -87.33654475]  # float32 overflow, last subnormal, min normal

# (uniform range, special points) per function: samples concentrate where the function is interesting.
DOMAINS = {
    "exp": ((-750, 712), [709.782712893384, -745.1332191019411, -708.39641853226408, 0.0, 1.0, *F32_EXP_EDGES]),
    "exp2": ((-1080, 1025), [1024.0, -1074.0, -1022.0, 0.5, 0.0]),
    "expm1": ((-40, 712), [709.782712893384, 0.0, 0.34657359, -0.34657359, 1e-10, 88.72283935546875]),
    "log": ((0, 4), [1.0, 2.0, 0.5, 2.2250738585072014e-308, 0.7071067811865476]),
    "log2": ((0, 4), [1.0, 2.0, 8.0, 0.5, 1024.0]),
    "log10": ((0, 4), [1.0, 10.0, 100.0, 0.1, 1000.0]),
    "log1p": ((-1, 4), [-1.0, 0.0, 1e-10, -0.29289321881345254, 0.41421356237309503]),
    "sin": ((-10, 10), [math.pi / 2, math.pi, 3 * math.pi / 2, 1e6 * math.pi, 0.0, math.pi / 4]),
    "cos": ((-10, 10), [math.pi / 2, math.pi, 3 * math.pi / 2, 1e6 * math.pi, 0.0, math.pi / 4]),
    "tan": ((-10, 10), [math.pi / 2, math.pi, 3 * math.pi / 2, 1e6 * math.pi, 0.0, math.pi / 4]),
    "sinh": ((-715, 715), [710.4758600739439, 22.0, 1.0, 0.0, 89.41598629223294]),
    "cosh": ((-715, 715), [710.4758600739439, 22.0, 1.0, 0.0, 89.41598629223294]),
    "tanh": ((-25, 25), [22.0, 1.0, 0.55, 0.0]),
    "arcsin": ((-1, 1), [1.0, -1.0, 0.5, -0.5, 0.0, 0.975]),
    "arccos": ((-1, 1), [1.0, -1.0, 0.5, -0.5, 0.0, 0.975]),
    "arctan": ((-10, 10), [0.41421356237309503, 2.414213562373095, 1.0, 0.0]),
    "arctan2": ((-10, 10), [1.0, 0.0, 0.5]),
    "arcsinh": ((-10, 10), [2.0, 2.0**28, 0.0, 1.0]),
    "arccosh": ((1, 10), [1.0, 2.0, 2.0**28]),
    "arctanh": ((-1, 1), [0.5, -0.5, 1.0, -1.0, 0.0]),
    "erf": ((-7, 7), [0.25, 0.5, 0.75, 1.125, 12.0, 0.0]),
    "erfc": ((-7, 30), [0.25, 0.5, 0.75, 1.125, 12.0, 26.5, 27.2, 0.0]),
    "pow": ((-10, 10), [1.0, 0.5, 2.0]),
    "sigmoid": ((-750, 750), [-745.0, -40.0, 0.0, 36.0, -103.97, -87.33]),
    "softplus": ((-750, 750), [-745.0, -40.0, 0.0, 36.0]),
}
TRIG = ("sin", "cos", "tan")
SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 5e-324, -5e-324, 1e-310, 2.2250738585072014e-308]


def _random_bits(rng: np.random.Generator, dtype, n: int) -> np.ndarray:
    """Uniform bit patterns: log-uniform magnitudes over the whole range, both signs, subnormals, inf and nan."""
    itype = np.uint64 if dtype == np.float64 else np.uint32
    return rng.integers(0, np.iinfo(itype).max, n, dtype=itype, endpoint=True).view(dtype)


def _neighbours(points, dtype, k: int = 40) -> np.ndarray:
    """Each point, its k nearest floats either side, and small relative perturbations."""
    pts = np.array(points, dtype=dtype)
    pts = np.concatenate([pts, -pts])
    out = [pts]
    lo, hi = pts.copy(), pts.copy()
    for _ in range(k):
        lo, hi = np.nextafter(lo, dtype(-np.inf)), np.nextafter(hi, dtype(np.inf))
        out += [lo, hi]
    for rel in (1e-9, 1e-6, 1e-3):
        out.append((pts * (1 + rel)).astype(dtype))
        out.append((pts * (1 - rel)).astype(dtype))
    return np.concatenate(out)


def sample_unary(name: str, dtype, n: int = N, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    (lo, hi), points = DOMAINS[name]
    big = float(np.finfo(dtype).max)
    lo, hi = max(lo, -big), min(hi, big)
    quarter = n // 4
    bits = _random_bits(rng, dtype, quarter)
    uniform = rng.uniform(lo, hi, quarter).astype(dtype)
    span = max(abs(lo), abs(hi))
    tiny = float(np.finfo(dtype).smallest_subnormal)
    logu = np.exp(rng.uniform(np.log(tiny), np.log(span), quarter)) * rng.choice([-1.0, 1.0], quarter)
    logu = logu.astype(dtype)
    special = np.concatenate([_neighbours(points, dtype), np.array(SPECIALS, dtype=dtype)])
    rest = n - 3 * quarter - special.size
    near = (rng.uniform(lo, hi, rest) * np.exp(rng.uniform(-30, 0, rest))).astype(dtype)
    x = np.concatenate([bits, uniform, logu, special, near])
    if name in TRIG:  # documented limit of the Cody-Waite reduction
        with np.errstate(invalid="ignore"):
            keep = (np.abs(x) <= mathlib.TRIG_LIMIT) | ~np.isfinite(x)
            x = np.where(keep, x, np.fmod(x, dtype(mathlib.TRIG_LIMIT)))
    return x


def sample_binary(name: str, dtype, n: int = N, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q = n // 5
    xs, ys = [_random_bits(rng, dtype, q)], [_random_bits(rng, dtype, q)]
    xs.append(rng.uniform(-10, 10, q).astype(dtype))
    ys.append(rng.uniform(-10, 10, q).astype(dtype))
    if name == "pow":
        # results across the whole range, near overflow and underflow: y = t / log(x)
        span = 700 if dtype == np.float64 else 85
        x = np.exp(rng.uniform(-span, span, q)).astype(dtype)
        x = x[(x > 0) & np.isfinite(x) & (x != 1)]
        t = rng.uniform(-760, 720, x.size) if dtype == np.float64 else rng.uniform(-110, 95, x.size)
        xs.append(x)
        ys.append((t / np.log(x.astype(np.float64))).astype(dtype))
        # x near 1 with large y, and negative x with integer y
        xs.append((1 + rng.uniform(-1e-3, 1e-3, q)).astype(dtype))
        ys.append(rng.uniform(-1e5, 1e5, q).astype(dtype))
        xs.append(rng.uniform(-10, 10, q).astype(dtype))
        ys.append(rng.integers(-60, 60, q).astype(dtype))
    else:
        scale = np.exp(rng.uniform(-300, 300, 3 * q)) if dtype == np.float64 else np.exp(rng.uniform(-40, 40, 3 * q))
        xs.append(rng.uniform(-1, 1, 3 * q).astype(dtype))
        ys.append((rng.uniform(-1, 1, 3 * q) * scale).astype(dtype))
    with np.errstate(over="ignore"):  # 1e300 is inf in float32: one more special value
        grid = np.array(SPECIALS + [0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 1e300, -1e300, 1e-300], dtype=dtype)
    gx, gy = np.meshgrid(grid, grid)
    xs.append(gx.ravel())
    ys.append(gy.ravel())
    x, y = np.concatenate(xs), np.concatenate(ys)
    pad = max(0, n - x.size)
    return np.concatenate([x, rng.uniform(-2, 2, pad).astype(dtype)]), np.concatenate(
        [y, rng.normal(0, 3, pad).astype(dtype)]
    )


def ulp_errors(got: np.ndarray, ref: np.ndarray, dtype) -> np.ndarray:
    """|got - ref| in ulps of ``dtype`` at ref (ref in long double); inf where nan/inf/sign-of-zero disagree."""
    fi = np.finfo(dtype)
    emin, mant = int(np.log2(fi.tiny)), fi.nmant
    with np.errstate(invalid="ignore", over="ignore"):
        r = ref.astype(dtype)
        g = got.astype(LD)
        _, ex = np.frexp(np.abs(ref))
        ulp = np.ldexp(LD(1), np.maximum(ex.astype(np.int64) - 1, emin) - mant)
        err = np.abs(g - ref) / ulp
        special = ~np.isfinite(r) | ~np.isfinite(got)
        same = (np.isnan(r) & np.isnan(got)) | (r == got)
        err = np.where(special, np.where(same, 0.0, np.inf), err)
        zero_sign = (r == 0) & (got == 0) & (np.signbit(r) != np.signbit(got))
        err = np.where(zero_sign, np.inf, err)
    return err.astype(np.float64)


@pytest.fixture(scope="session")
def kernels():
    """One module with a loop kernel per (function, dtype), optimized and JIT-compiled once."""
    mod = ir.Module()
    names = []
    for fname in mathlib.FUNCTIONS:
        arity = mathlib._BODIES[fname][0]
        for np_t, ir_t in DTYPES.items():
            kname = f"k_{fname}_{np.dtype(np_t).name}"
            body = lambda b, *args, f=fname: mathlib.call(b, f, *args)
            loops.emit_map_loop(mod, kname, ir_t, arity, body)
            names.append(kname)
    llmod = target.optimize(target.parse_and_verify(str(mod)))
    lib = target.load_ir(str(llmod), names)
    return lib, str(llmod)


def run_kernel(kernels, fname: str, dtype, *args: np.ndarray) -> np.ndarray:
    lib, _ = kernels
    kname = f"k_{fname}_{np.dtype(dtype).name}"
    proto = ctypes.CFUNCTYPE(None, ctypes.c_int64, *([ctypes.c_void_p] * (len(args) + 1)))
    func = proto(lib.address(kname))
    args = [np.ascontiguousarray(a, dtype=dtype) for a in args]
    out = np.empty_like(args[0])
    func(out.size, *[a.ctypes.data for a in args], out.ctypes.data)
    return out


REPORT: dict[tuple[str, str], float] = {}


@pytest.mark.parametrize("dtype", list(DTYPES), ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("fname", mathlib.FUNCTIONS)
def test_accuracy_against_numpy(kernels, fname: str, dtype) -> None:
    if mathlib._BODIES[fname][0] == 2:
        x, y = sample_binary(fname, dtype)
        args = (x, y)
    else:
        args = (sample_unary(fname, dtype),)
    got = run_kernel(kernels, fname, dtype, *args)
    with np.errstate(all="ignore"):
        ref = REFERENCES[fname](*[a.astype(LD) for a in args])
    err = ulp_errors(got, np.asarray(ref, dtype=LD), dtype)
    worst = int(np.argmax(err))
    REPORT[(fname, np.dtype(dtype).name)] = float(err[worst])
    print(f"\n{fname:9s} {np.dtype(dtype).name}: max {err[worst]:.3f} ulp over {err.size} points")
    assert args[0].size >= N
    assert err[worst] <= MAX_ULP, (
        f"{fname}{tuple(a[worst] for a in args)} = {got[worst]!r}, reference {ref[worst]!r}: {err[worst]:.3g} ulp"
    )


def _kernel_ir(kernels, fname: str, dtype) -> str:
    _, text = kernels
    return text.split(f"@k_{fname}_{np.dtype(dtype).name}(")[1].split("\n}\n")[0]


@pytest.mark.parametrize("fname", TRIG)
def test_trig_beyond_documented_limit_is_nan(kernels, fname: str) -> None:
    for dtype in DTYPES:
        big = np.array([mathlib.TRIG_LIMIT * 2, -1e30, np.finfo(dtype).max], dtype=dtype)
        assert np.isnan(run_kernel(kernels, fname, dtype, big)).all()
        edge = np.array([mathlib.TRIG_LIMIT, -mathlib.TRIG_LIMIT], dtype=dtype)
        got = run_kernel(kernels, fname, dtype, edge)
        np.testing.assert_allclose(got, getattr(np, fname)(edge.astype(LD)).astype(dtype), rtol=4e-7)


def test_exp_loop_is_vectorized(kernels) -> None:
    body = _kernel_ir(kernels, "exp", np.float64)
    assert re.search(r"<(4|8) x double>", body), "the exp loop was not vectorized"
    assert not re.search(r"call [^\n]*@(exp|llvm\.exp)\b", body), "the exp loop calls a scalar exp"


@pytest.mark.parametrize("fname", mathlib.FUNCTIONS)
def test_every_loop_is_vectorized_without_libm(kernels, fname: str) -> None:
    for dtype in DTYPES:
        body = _kernel_ir(kernels, fname, dtype)
        lanes = re.findall(r"<(\d+) x (?:double|float)>", body)
        assert lanes and max(int(n) for n in lanes) >= 4, f"{fname} {np.dtype(dtype).name} loop not vectorized"
        # only intrinsics that vectorize (fabs, fma, rint, ...) may be called, in the scalar remainder loop
        callees = set(re.findall(r"call [^@\n]*@([\w.]+)", body))
        assert all(c.startswith("llvm.") for c in callees), callees
        assert not any(c.startswith(("llvm.exp", "llvm.log", "llvm.sin", "llvm.cos", "llvm.pow")) for c in callees)


def test_invalid_ir_raises() -> None:
    bad_type = "define i32 @f() {\n  ret void\n}"
    not_dominated = (
        "define i32 @g(i1 %c) {\nentry:\n  br i1 %c, label %a, label %b\na:\n  %x = add i32 1, 2\n"
        "  br label %b\nb:\n  ret i32 %x\n}"
    )
    for text in (bad_type, not_dominated, "this is not IR"):
        with pytest.raises(target.LLVMError):
            target.parse_and_verify(text)


def test_call_checks_arguments() -> None:
    fn = ir.Function(ir.Module(), ir.FunctionType(ir.DoubleType(), [ir.DoubleType(), ir.FloatType()]), "f")
    b = ir.IRBuilder(fn.append_basic_block())
    with pytest.raises(TypeError, match="pow"):
        mathlib.call(b, "pow", *fn.args)
    with pytest.raises(KeyError, match="nope"):
        mathlib.call(b, "nope", fn.args[0])


@pytest.mark.parametrize("fname", TRIG)
def test_float32_trig_large_arguments(kernels, fname: str) -> None:
    """float32 sin/cos/tan reduce in double: near 2**50 x/pi is rounded by up to 0.03, so the reduced argument
    overshoots pi/2 (pi/4 for tan) a little; the float32 polynomials are fitted with that slack."""
    rng = np.random.default_rng(5)
    x = (np.exp2(rng.uniform(20, 50, 1 << 18)) * rng.choice([-1.0, 1.0], 1 << 18)).astype(np.float32)
    got = run_kernel(kernels, fname, np.float32, x)
    err = ulp_errors(got, getattr(np, fname)(x.astype(LD)), np.float32)
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP, f"{fname}({x[worst]!r}) = {got[worst]!r}: {err[worst]:.3g} ulp"
