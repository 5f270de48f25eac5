"""Scalar LLVM IR for elementwise ops, with numpy's semantics exactly (integers, bools, casts, nan).

One :class:`ScalarBuilder` emits one op's scalar code into an ``llvmlite.ir.IRBuilder``; the op table's
``LOWER`` rows (compiler/ops/elementwise.py) call its methods. Nothing here is specific to the host: no libc
call and no target intrinsic beyond LLVM's generic ones, so the CUDA backend can emit the same scalar code
inside a thread. Transcendental functions come from :mod:`.mathlib` (vectorizable polynomials in IR).

Values in registers: bool is ``i1``, integers ``iN`` (signedness is the dtype's), floats ``half``/``float``/
``double``. In memory bool is ``i8`` (0 or 1), as numpy stores it.

>>> from llvmlite import ir
>>> fn = ir.Function(ir.Module(), ir.FunctionType(ir.IntType(8), [ir.IntType(8)] * 2), "f")
>>> b = ir.IRBuilder(fn.append_basic_block())
>>> s = ScalarBuilder(b, ("int8", "int8"), "int8")
>>> _ = b.ret(s.floor_div(*fn.args))
>>> "sdiv" in str(fn)
True
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir

_FLOATS = {"float16": ir.HalfType(), "float32": ir.FloatType(), "float64": ir.DoubleType()}
I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)


def ir_type(dtype: str) -> ir.Type:
    """The register type of a numpy dtype name: ``bool -> i1``, ``int16 -> i16``, ``float32 -> float``."""
    if dtype in _FLOATS:
        return _FLOATS[dtype]
    if dtype == "bool":
        return I1
    return ir.IntType(8 * np.dtype(dtype).itemsize)


def mem_type(dtype: str) -> ir.Type:
    """The in-memory element type (bool is one byte, as numpy stores it)."""
    return I8 if dtype == "bool" else ir_type(dtype)


def kind(dtype: str) -> str:
    """numpy's kind letter: 'b', 'i', 'u' or 'f'."""
    return np.dtype(dtype).kind


def constant(dtype: str, value) -> ir.Constant:
    """An IR constant of ``dtype`` holding ``value`` as numpy would store it (wrapping integers)."""
    k = kind(dtype)
    if k == "f":
        return ir.Constant(ir_type(dtype), float(np.asarray(value).astype(dtype)))
    if k == "b":
        return ir.Constant(I1, int(bool(value)))
    bits = 8 * np.dtype(dtype).itemsize
    v = int(value) & ((1 << bits) - 1)
    return ir.Constant(ir.IntType(bits), v - (1 << bits) if v >> (bits - 1) else v)


def load_value(b: ir.IRBuilder, ptr, dtype: str):
    """Load one element and turn it into its register form (bool bytes become ``i1``)."""
    v = b.load(ptr, typ=mem_type(dtype))
    return b.icmp_unsigned("!=", v, ir.Constant(I8, 0)) if dtype == "bool" else v


def store_value(b: ir.IRBuilder, value, ptr, dtype: str) -> None:
    b.store(b.zext(value, I8) if dtype == "bool" else value, ptr)


def _intrinsic(b: ir.IRBuilder, name: str, types: list, args: list, ret=None):
    """Call a generic LLVM intrinsic (llvm.fabs, llvm.smax, ...), declaring it once per module."""
    module = b.module
    suffix = ".".join(_mangle(t) for t in types)
    full = f"llvm.{name}.{suffix}" if suffix else f"llvm.{name}"
    fn = module.globals.get(full)
    if fn is None:
        fnty = ir.FunctionType(ret or args[0].type, [a.type for a in args])
        fn = ir.Function(module, fnty, full)
    return b.call(fn, args)


def _mangle(t: ir.Type) -> str:
    if isinstance(t, ir.IntType):
        return f"i{t.width}"
    return {"half": "f16", "float": "f32", "double": "f64"}[str(t)]


def cast(b: ir.IRBuilder, x, src: str, dst: str):
    """numpy's ``astype`` from ``src`` to ``dst`` (float -> int truncates; out-of-range gives x86's value).

    numpy's C casts of out-of-range floats are undefined behaviour in C; numpy on x86-64 returns what
    ``cvttsd2si`` gives (INT_MIN of 32 or 64 bits, then truncated), and so do we, without poison values.
    """
    if src == dst:
        return x
    ks, kd = kind(src), kind(dst)
    to = ir_type(dst)
    if kd == "b":
        if ks == "f":
            return b.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0))  # nan is True, as in numpy
        return b.icmp_unsigned("!=", x, ir.Constant(x.type, 0))
    if ks == "b":
        return b.uitofp(x, to) if kd == "f" else b.zext(x, to)
    if ks in "iu" and kd in "iu":
        w_src, w_dst = x.type.width, to.width
        if w_src == w_dst:
            return x
        if w_src > w_dst:
            return b.trunc(x, to)
        return b.sext(x, to) if ks == "i" else b.zext(x, to)
    if kd == "f":
        if ks == "i":
            return b.sitofp(x, to)
        if ks == "u":
            return b.uitofp(x, to)
        if np.dtype(src).itemsize < np.dtype(dst).itemsize:
            return b.fpext(x, to)
        return b.fptrunc(x, to)
    # float -> integer
    if src == "float16":
        x = b.fpext(x, ir.FloatType())
    width = to.width
    if dst == "uint64":
        big = ir.Constant(x.type, 2.0**63)
        low = _cvtt(b, x, 64)
        high = b.xor(_cvtt(b, b.fsub(x, big), 64), ir.Constant(I64, -(2**63)))
        return b.select(b.fcmp_ordered(">=", x, big), high, low)
    bits = 64 if (width == 64 or dst == "uint32") else 32
    v = _cvtt(b, x, bits)
    return b.trunc(v, to) if width < bits else v


def _cvtt(b: ir.IRBuilder, x, bits: int):
    """x86 ``cvtt`` to a ``bits``-wide integer: truncation toward zero, INT_MIN for nan and out of range."""
    ity = ir.IntType(bits)
    sat = _intrinsic(b, "fptosi.sat", [ity, x.type], [x], ret=ity)
    inside = b.fcmp_ordered("<", x, ir.Constant(x.type, 2.0 ** (bits - 1)))
    return b.select(inside, sat, ir.Constant(ity, -(2 ** (bits - 1))))


class ScalarBuilder:
    """Emits one elementwise op. ``in_dtypes`` are the op's loop dtypes (its arguments arrive cast to them,
    as numpy's ufunc loop would receive them); methods return a value of ``out_dtype``.

    ``error_flag`` collects conditions numpy raises for (an integer to a negative power): the kernel ORs them
    and the runtime raises numpy's error.
    """

    def __init__(self, b: ir.IRBuilder, in_dtypes: tuple, out_dtype: str, attrs: dict | None = None, math=None):
        self.b = b
        self.in_dtypes = tuple(in_dtypes)
        self.out_dtype = out_dtype
        self.attrs = attrs or {}
        self.errors: list = []
        self._math = math

    # --- helpers ----------------------------------------------------------------------------------------------
    @property
    def dtype(self) -> str:
        """The (first) loop input dtype: what the op computes in."""
        return self.in_dtypes[0] if self.in_dtypes else self.out_dtype

    @property
    def kind(self) -> str:
        return kind(self.dtype)

    def const(self, value, dtype: str | None = None):
        return constant(dtype or self.dtype, value)

    def intrinsic(self, name: str, *args, ret=None):
        return _intrinsic(self.b, name, [args[0].type], list(args), ret)

    def to_out(self, x, src: str | None = None):
        return cast(self.b, x, src or self.dtype, self.out_dtype)

    def math(self, name: str, *args):
        """A mathlib function on floats; half is computed in float and rounded, as numpy's half loops do."""
        b = self.b
        half = self.dtype == "float16"
        if half:
            args = tuple(b.fpext(a, ir.FloatType()) for a in args)
        out = _call_math(b, name, list(args), self._math)
        return b.fptrunc(out, ir_type("float16")) if half else out

    def isnan(self, x):
        if self.kind != "f":
            return ir.Constant(I1, 0)
        return self.b.fcmp_unordered("uno", x, x)

    # --- arithmetic -------------------------------------------------------------------------------------------
    def add(self, x, y):
        b = self.b
        return {"f": b.fadd, "b": b.or_}.get(self.kind, b.add)(x, y)

    def sub(self, x, y):
        return self.b.fsub(x, y) if self.kind == "f" else self.b.sub(x, y)

    def mul(self, x, y):
        b = self.b
        return {"f": b.fmul, "b": b.and_}.get(self.kind, b.mul)(x, y)

    def true_div(self, x, y):
        return self.b.fdiv(x, y)

    def _safe_divisor(self, x, y):
        """(divisor that cannot trap, y == 0): 0 and INT_MIN / -1 would trap (x86 raises SIGFPE)."""
        b = self.b
        zero = b.icmp_unsigned("==", y, self.const(0))
        bad = zero
        if self.kind == "i":
            bits = y.type.width
            overflow = b.and_(
                b.icmp_signed("==", x, self.const(-(2 ** (bits - 1)))), b.icmp_signed("==", y, self.const(-1))
            )
            bad = b.or_(zero, overflow)
        return b.select(bad, self.const(1), y), zero

    def floor_div(self, x, y):
        b = self.b
        if self.kind == "f":
            return self._float_divmod(x, y)[0]
        d, zero = self._safe_divisor(x, y)
        if self.kind == "u":
            return b.select(zero, self.const(0), b.udiv(x, d))
        q, r = b.sdiv(x, d), b.srem(x, d)
        # C truncates toward zero; floor when the remainder's sign differs from the divisor's
        adjust = b.and_(b.icmp_signed("!=", r, self.const(0)), b.icmp_signed("<", b.xor(r, d), self.const(0)))
        q = b.sub(q, b.zext(adjust, q.type))
        return b.select(zero, self.const(0), q)

    def mod(self, x, y):
        b = self.b
        if self.kind == "f":
            return self._float_divmod(x, y)[1]
        d, zero = self._safe_divisor(x, y)
        if self.kind == "u":
            return b.select(zero, self.const(0), b.urem(x, d))
        r = b.srem(x, d)
        adjust = b.and_(b.icmp_signed("!=", r, self.const(0)), b.icmp_signed("<", b.xor(r, d), self.const(0)))
        r = b.select(adjust, b.add(r, d), r)
        return b.select(zero, self.const(0), r)

    def _float_divmod(self, a, b_):
        """numpy's npy_divmod (floor quotient, Python-style remainder), with its results for b == 0."""
        b = self.b
        zero, one = self.const(0.0), self.const(1.0)
        mod = b.frem(a, b_)
        div = b.fdiv(b.fsub(a, mod), b_)
        mod_nz = b.fcmp_unordered("!=", mod, zero)
        fix = b.and_(mod_nz, b.xor(b.fcmp_ordered("<", b_, zero), b.fcmp_ordered("<", mod, zero)))
        mod2 = b.select(fix, b.fadd(mod, b_), mod)
        div2 = b.select(fix, b.fsub(div, one), div)
        mod2 = b.select(mod_nz, mod2, self.intrinsic("copysign", zero, b_))
        floor = self.intrinsic("floor", div2)
        snapped = b.select(b.fcmp_ordered(">", b.fsub(div2, floor), self.const(0.5)), b.fadd(floor, one), floor)
        quotient = b.select(
            b.fcmp_unordered("!=", div2, zero), snapped, self.intrinsic("copysign", zero, b.fdiv(a, b_))
        )
        b_zero = b.fcmp_ordered("==", b_, zero)
        return b.select(b_zero, b.fdiv(a, b_), quotient), b.select(b_zero, mod, mod2)

    def pow(self, x, y):
        if self.kind == "f":
            return self.math("pow", x, y)
        return self._int_pow(x, y)

    def _int_pow(self, x, y):
        """Square-and-multiply over every bit of the exponent, branch free (so the loop still vectorizes)."""
        b = self.b
        width = x.type.width
        result, base = self.const(1), x
        for bit in range(width if self.kind == "u" else width - 1):
            on = b.icmp_unsigned("!=", b.and_(y, self.const(1 << bit)), self.const(0))
            result = b.select(on, b.mul(result, base), result)
            base = b.mul(base, base)
        if self.kind == "i":
            negative = b.icmp_signed("<", y, self.const(0))
            self.errors.append(negative)  # numpy: "Integers to negative integer powers are not allowed."
            result = b.select(negative, self.const(0), result)
        return result

    def maximum(self, x, y):
        return self._pick(x, y, ">")

    def minimum(self, x, y):
        return self._pick(x, y, "<")

    def _pick(self, x, y, op: str):
        """numpy's maximum/minimum: the first argument if it wins or is nan, else the second (nan too)."""
        b = self.b
        if self.kind == "f":
            return b.select(b.or_(b.fcmp_ordered(op, x, y), self.isnan(x)), x, y)
        if self.kind == "i":
            return b.select(b.icmp_signed(op, x, y), x, y)
        return b.select(b.icmp_unsigned(op, x, y), x, y)

    def compare(self, op: str, x, y):
        """A comparison (``op`` in ==, !=, <, <=, >, >=); nan compares unequal to everything, as in C."""
        b = self.b
        kx, ky = kind(self.in_dtypes[0]), kind(self.in_dtypes[1])
        if kx == "f":
            return b.fcmp_unordered(op, x, y) if op == "!=" else b.fcmp_ordered(op, x, y)
        if kx != ky and {kx, ky} <= {"i", "u"}:
            # numpy compares int64 with uint64 exactly: widen both so every value fits
            wide = ir.IntType(x.type.width * 2)
            x = b.sext(x, wide) if kx == "i" else b.zext(x, wide)
            y = b.sext(y, wide) if ky == "i" else b.zext(y, wide)
            return b.icmp_signed(op, x, y)
        if kx == "i":
            return b.icmp_signed(op, x, y)
        return b.icmp_unsigned(op, x, y)

    def invert(self, x):
        return self.b.not_(x)

    def neg(self, x):
        return self.b.fneg(x) if self.kind == "f" else self.b.neg(x)

    def abs(self, x):
        b = self.b
        if self.kind == "f":
            return self.intrinsic("fabs", x)
        if self.kind == "i":
            return b.select(b.icmp_signed("<", x, self.const(0)), b.neg(x), x)  # INT_MIN stays INT_MIN
        return x

    def sign(self, x):
        b = self.b
        if self.kind == "f":
            zero = self.const(0.0)
            s = b.select(b.fcmp_ordered("<", x, zero), self.const(-1.0), b.select(self.isnan(x), x, zero))
            return b.select(b.fcmp_ordered(">", x, zero), self.const(1.0), s)
        if self.kind == "i":
            pos = b.zext(b.icmp_signed(">", x, self.const(0)), x.type)
            return b.sub(pos, b.zext(b.icmp_signed("<", x, self.const(0)), x.type))
        return b.zext(b.icmp_unsigned("!=", x, self.const(0)), x.type)

    def reciprocal(self, x):
        b = self.b
        if self.kind == "f":
            return b.fdiv(self.const(1.0), x)
        # numpy computes 1.0 / x in double and converts back with C's (x86's) conversion
        xf = cast(b, x, self.dtype, "float64")
        return cast(b, b.fdiv(constant("float64", 1.0), xf), "float64", self.dtype)

    def sqr(self, x):
        return self.mul(x, x)

    def sqrt(self, x):
        return self.intrinsic("sqrt", x)

    def rounding(self, name: str, x):
        """floor, ceil, trunc or roundeven (numpy's round: half to even); integers are already whole."""
        return self.intrinsic(name, x) if self.kind == "f" else x

    def isinf(self, x):
        if self.kind != "f":
            return ir.Constant(I1, 0)
        return self.b.fcmp_ordered("==", self.intrinsic("fabs", x), self.const(float("inf")))

    def clip(self, x, lo, hi):
        """numpy's clip: minimum(maximum(x, lo), hi) with nan propagating."""
        return self.minimum(self.maximum(x, lo), hi)

    def where(self, c, x, y):
        return self.b.select(c, x, y)

    def cast(self, x):
        return cast(self.b, x, self.dtype, self.out_dtype)


# --- transcendental functions ----------------------------------------------------------------------------------
#: LLVM intrinsics used when the math library lacks a function (correct, but scalarized into libm calls)
_LLVM_MATH = {"exp", "exp2", "log", "log2", "log10", "sin", "cos", "tan", "pow"}


def _call_math(b: ir.IRBuilder, name: str, args: list, mathlib=None):
    fn = (mathlib or _mathlib_function)(name)
    if fn is not None:
        return fn(b, name, *args)
    if name in _LLVM_MATH:
        return _intrinsic(b, name, [args[0].type], args)
    # last resort: the C library's function (libm resolves in the JIT; not for the GPU)
    suffix = "f" if str(args[0].type) == "float" else ""
    cname = {"arcsin": "asin", "arccos": "acos", "arctan": "atan", "arctan2": "atan2", "arcsinh": "asinh",
             "arccosh": "acosh", "arctanh": "atanh"}.get(name, name) + suffix  # fmt: skip
    module = b.module
    fn = module.globals.get(cname)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(args[0].type, [a.type for a in args]), cname)
    return b.call(fn, args)


def _mathlib_function(name: str):
    """``mathlib.call`` when the math library has ``name``, else ``None``."""
    from . import mathlib  # noqa: PLC0415  (imported on first use: it is large)

    return mathlib.call if name in mathlib.FUNCTIONS else None


# --- composites ------------------------------------------------------------------------------------------------
def loop_dtypes(op: str, keys: tuple, out_dtype: str) -> tuple:
    """The dtypes numpy's ufunc loop takes its arguments in, for argument ``keys`` (dtype names, or ``int``/
    ``float`` for weak Python scalars as in NEP 50); the op's output dtype where numpy has no ufunc.

    >>> loop_dtypes("lt", ("int8", "float32"), "bool")
    ('float32', 'float32')
    >>> loop_dtypes("add", ("int8", int), "int8")
    ('int8', 'int8')
    """
    return _loop_dtypes(op, keys, out_dtype)


@functools.cache
def _loop_dtypes(op: str, keys: tuple, out_dtype: str) -> tuple:
    from ..optable import OPS  # noqa: PLC0415  (the op table imports the ops, which name this module's methods)

    if op == "cast":
        return tuple(k if isinstance(k, str) else np.dtype(k).name for k in keys)
    if op == "where":
        return ("bool", out_dtype, out_dtype)
    fn = OPS[op].extra.get("numpy")
    if isinstance(fn, np.ufunc):
        try:
            resolved = fn.resolve_dtypes((*(k if k in (int, float) else np.dtype(k) for k in keys), None))
        except (TypeError, ValueError):
            resolved = None
        if resolved is not None and resolved[-1].name == out_dtype:
            return tuple(d.name for d in resolved[: len(keys)])
    return (out_dtype,) * len(keys)


def _weak_key(value, dtype: str):
    """The NEP 50 key of an inlined constant: ``int``/``float`` for a weak Python number, else its dtype."""
    item = value.item()
    if isinstance(item, bool):
        return "bool"
    return type(item) if isinstance(item, (int, float)) else dtype


def emit_composite(b: ir.IRBuilder, inner, args: list, lower: dict) -> tuple:
    """Emit a fused Composite's steps on register values ``args`` (one per input, of the input dtypes).

    Returns ``(result, errors)``: the result in the composite's dtype and the ``i1`` conditions under which
    numpy would raise. Every step is rounded to its own dtype, as numpy's separate ops would.
    """
    values = list(args)
    keys: list = list(inner.dtypes[: inner.n_inputs])
    errors: list = []
    for k, (op, arg_ids, attrs) in enumerate(inner.steps):
        dtype = inner.dtypes[inner.n_inputs + k]
        fields = dict(attrs)
        if op == "constant":
            value = fields["value"].value
            values.append(constant(dtype, value.reshape(())))
            keys.append(_weak_key(value, dtype) if fields.get("weak") else dtype)
            continue
        arg_keys = tuple(keys[a] for a in arg_ids)
        loop = loop_dtypes(op, arg_keys, dtype)
        cast_args = [cast(b, values[a], inner.dtypes[a], d) for a, d in zip(arg_ids, loop)]
        s = ScalarBuilder(b, loop, dtype, fields)
        values.append(lower[op](s, *cast_args))
        errors.extend(s.errors)
        keys.append(dtype)
    return values[-1], errors
