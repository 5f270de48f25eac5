"""Throughput of the LLVM IR math library against numpy, single thread, 10M elements (not a test).

Each function is a JIT-compiled loop ``out[i] = f(x[i])`` over contiguous arrays; numpy runs the same function
with a preallocated ``out=`` buffer (numpy at its fastest). Prints the best time of each and the ratio
numpy / sympile (> 1: sympile is faster). Functions numpy lacks use their usual numpy formulation as the peer.

    .venv/bin/python bench/mathlib.py [--n 10000000] [--repeat 5] [--only exp,log]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

import machine  # noqa: F401  (sets thread variables before numpy loads)
import numpy as np
from llvmlite import ir

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sympile.compiler.llvm import loops, mathlib, target  # noqa: E402


def _erf_numpy():
    try:
        from scipy import special

        return special.erf, special.erfc, "scipy"
    except ImportError:
        return None, None, None


def numpy_peers() -> dict[str, tuple]:
    """name -> (callable(x[, y], out), note): the fastest plain numpy/scipy way to compute it."""

    def sigmoid(x, out):
        np.negative(x, out=out)
        np.exp(out, out=out)
        out += 1
        return np.reciprocal(out, out=out)

    def softplus(x, out):
        return np.logaddexp(0, x, out=out)

    def ufunc(f):
        return lambda *a: f(*a[:-1], out=a[-1])

    same_name = (
        "exp exp2 expm1 log log2 log10 log1p sin cos tan sinh cosh tanh arcsin arccos arctan arctan2 "
        "arcsinh arccosh arctanh"
    ).split()
    peers = {name: (ufunc(getattr(np, name)), "") for name in same_name}
    peers["pow"] = (ufunc(np.power), "")
    peers["sigmoid"] = (sigmoid, "1/(1+exp(-x)) in place")
    peers["softplus"] = (softplus, "logaddexp(0, x)")
    erf, erfc, src = _erf_numpy()
    if erf is not None:
        peers["erf"] = (lambda x, out: erf(x, out=out), src)
        peers["erfc"] = (lambda x, out: erfc(x, out=out), src)
    return peers


def inputs(name: str, n: int, dtype, rng: np.random.Generator) -> list[np.ndarray]:
    """Typical arguments: the range where the function is usually evaluated."""
    lo, hi = {
        "log": (0.01, 100),
        "log2": (0.01, 100),
        "log10": (0.01, 100),
        "log1p": (-0.5, 100),
        "arcsin": (-1, 1),
        "arccos": (-1, 1),
        "arctanh": (-0.99, 0.99),
        "arccosh": (1, 100),
        "exp": (-50, 50),
        "exp2": (-50, 50),
        "expm1": (-50, 50),
        "sinh": (-50, 50),
        "cosh": (-50, 50),
    }.get(name, (-10, 10))
    x = rng.uniform(lo, hi, n).astype(dtype)
    if name == "pow":
        return [rng.uniform(0.1, 10, n).astype(dtype), rng.uniform(-5, 5, n).astype(dtype)]
    if name == "arctan2":
        return [x, rng.uniform(-10, 10, n).astype(dtype)]
    return [x]


def build(names: list[str]):
    mod = ir.Module()
    symbols = []
    for name in names:
        arity = mathlib._BODIES[name][0]
        for ty, tname in ((mathlib.F64, "float64"), (mathlib.F32, "float32")):
            kname = f"k_{name}_{tname}"
            loops.emit_map_loop(mod, kname, ty, arity, lambda b, *a, f=name: mathlib.call(b, f, *a))
            symbols.append(kname)
    t0 = time.perf_counter()
    llmod = target.optimize(target.parse_and_verify(str(mod)))
    lib = target.load_ir(str(llmod), symbols)
    return lib, time.perf_counter() - t0


def best_time(fn, repeat: int) -> float:
    """Best of ``repeat`` runs: the machine is shared, and the minimum is the least disturbed estimate."""
    fn()  # warm: page in the output buffer
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    names = [f for f in mathlib.FUNCTIONS if not args.only or f in args.only.split(",")]
    lib, compile_s = build(names)
    print(machine.format_description(machine.describe()))
    print(f"compiled {2 * len(names)} kernels in {compile_s * 1e3:.0f} ms; n = {args.n}, one thread, best-of ms\n")
    peers = numpy_peers()
    rng = np.random.default_rng(0)
    head = f"{'ours':>9s} {'numpy':>9s} {'ratio':>6s}"
    print(f"{'function':10s} | f64 {head} | f32 {head}")
    for name in names:
        row = [f"{name:10s}"]
        for dtype in (np.float64, np.float32):
            xs = inputs(name, args.n, dtype, rng)
            out = np.empty_like(xs[0])
            proto = ctypes.CFUNCTYPE(None, ctypes.c_int64, *([ctypes.c_void_p] * (len(xs) + 1)))
            kernel = proto(lib.address(f"k_{name}_{np.dtype(dtype).name}"))
            ptrs = [a.ctypes.data for a in xs] + [out.ctypes.data]
            ours = best_time(lambda k=kernel, p=ptrs: k(args.n, *p), args.repeat)
            peer = peers.get(name)
            if peer is None:
                theirs = float("nan")
            else:
                with np.errstate(all="ignore"):
                    theirs = best_time(lambda f=peer[0], a=xs, o=out: f(*a, o), args.repeat)
            row.append(f"|     {ours * 1e3:9.2f} {theirs * 1e3:9.2f} {theirs / ours:6.2f}")
        print(" ".join(row) + (f"  ({peers[name][1]})" if name in peers and peers[name][1] else ""))


if __name__ == "__main__":
    main()
