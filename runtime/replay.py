"""Captured calls: a program's native work recorded once per input layout, then replayed by one native call.

A call of a CpuProgram runs each step from Python: ~2-5 us of layout work, allocation and ctypes per kernel,
~1 us per bookkeeping step. W4's SGD step has ~60 steps, and this Python work was ~0.15 ms of its 1.8 ms.
Everything those steps decide depends only on the layouts of the arguments (shapes, strides, dtypes): so the
second call with a layout runs with a :class:`Recorder` attached, which writes down every native call (kernel
entries and their argument words; matrix products as BLAS ``gemm`` calls) and where each pointer in them
points. Later calls with that layout replay the record through the driver (compiler/llvm/driver.py): Python
allocates the outputs and makes one native call.

What a pointer can point into (a *source*):

- an argument (input or shared value): relocated to this call's argument, at the same offset;
- a buffer a kernel or product wrote: returned ones are allocated fresh at each call (relocated), the others
  are the very buffers of the recorded call, kept by the plan and reused (a lock keeps two threads from
  replaying one plan at once; the second runs the steps from Python);
- a constant or a value computed from shapes only (kept by the plan, never written).

A call that cannot be recorded this way leaves the layout to the step-by-step path: a step computed by numpy
(other than views and ``sum_to`` returning its input), a kernel split across threads, a temporary copy, a pointer
that two sources could explain, an output that is not a fresh buffer.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from .blas import ROW_MAJOR
from .pointers import data_pointer

KERNEL, SGEMM, DGEMM, COPY = 0, 1, 2, 3  # op kinds: compiler/llvm/driver.py
_GEMM_KIND = {"float32": SGEMM, "float64": DGEMM}
DRIVER_FN = ctypes.CFUNCTYPE(
    ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p
)
_local = threading.local()
#: the most memory a plan may keep in intermediate buffers: a replay saves microseconds, which matter only where
#: the arrays are small
MAX_KEPT_BYTES = 32 << 20
#: plans a program keeps (one per argument layout); more layouts start the count again
MAX_REPLAYS = 16


class CaptureFailed(Exception):
    """The call being recorded did something a replay cannot repeat."""


def recorder():
    """The Recorder attached to this thread's current call, or ``None`` (almost always)."""
    return getattr(_local, "recorder", None)


def extent(a: np.ndarray) -> tuple[int, int]:
    """The byte range ``[lo, hi)`` that ``a``'s elements span."""
    p = data_pointer(a)
    if a.size == 0:
        return p, p
    lo = hi = p
    for d, s in zip(a.shape, a.strides):
        if s < 0:
            lo += (d - 1) * s
        else:
            hi += (d - 1) * s
    return lo, hi + a.itemsize


class Recorder:
    """Collects the native calls of one call of a program, and the sources their pointers point into."""

    def __init__(self, values: list, constants: list):
        # sources: (kind, index, lo, hi, array); kinds: "arg" (index: position among the values), "buffer", "const"
        self.sources: list[tuple] = []
        for k, v in enumerate(values):
            self._add("arg", k, v)
        for c in constants:
            self._add("const", None, c)
        self.program_sources = len(self.sources)  # the later ones are the call's: the plan keeps them
        self.ops: list[tuple] = []  # (kind, fn address, stop, words, {word position: source}, node)
        self.failed: str | None = None  # why the call cannot be replayed (the call itself goes on)

    def fail(self, reason: str) -> None:
        if self.failed is None:
            self.failed = reason

    def _add(self, kind: str, index, a) -> int:
        lo, hi = extent(a)
        self.sources.append((kind, index, lo, hi, a))
        return len(self.sources) - 1

    def resolve(self, a: np.ndarray) -> tuple[int, int]:
        """``(source, byte offset)`` of ``a``'s first element; raises CaptureFailed if none or two explain it."""
        lo, hi = extent(a)
        found = [k for k, s in enumerate(self.sources) if s[2] <= lo and hi <= s[3] and s[2] < s[3]]
        if len(found) != 1:
            raise CaptureFailed("a pointer into no source, or into two")
        return found[0], data_pointer(a) - data_pointer(self.sources[found[0]][4])

    def add_constant(self, a) -> None:
        if type(a) is np.ndarray and a.size:
            try:
                self.resolve(a)
            except CaptureFailed:
                self._add("const", None, a)

    def kernel(self, fn, stop: int, words, arrays: list, node) -> None:
        """A kernel entry called as ``fn(0, stop, words)``; ``arrays`` are the arrays behind the first words
        (the inputs, then the output, which may be a new buffer)."""
        if self.failed is not None:
            return
        try:
            *inputs, out = arrays
            pointers = {k: self.resolve(a) for k, a in enumerate(inputs)}
            pointers[len(inputs)] = self._written(out)
        except CaptureFailed as e:
            self.fail(str(e))
            return
        self.ops.append((KERNEL, ctypes.cast(fn, ctypes.c_void_p).value, stop, list(words), pointers, node))

    def gemm(self, fn_address: int, a, b, out, layout_a, layout_b, node, alpha=1.0, beta=0.0) -> None:
        """``out = alpha * a @ b + beta * out`` by cblas ``?gemm`` (row major, 64-bit sizes) at ``fn_address``."""
        if self.failed is not None:
            return
        m, k = a.shape
        n = b.shape[1]
        scalar = np.array([alpha, beta], out.dtype).view(np.int32 if out.dtype == np.float32 else np.int64)
        alpha, beta = (int(v) for v in scalar)
        words = [ROW_MAJOR, layout_a[0], layout_b[0], m, n, k, alpha, 0, layout_a[1], 0, layout_b[1], beta, 0, n]
        try:
            pointers = {7: self.resolve(a), 9: self.resolve(b), 12: self._written(out)}
        except CaptureFailed as e:
            self.fail(str(e))
            return
        self.ops.append((_GEMM_KIND[out.dtype.name], fn_address, 0, words, pointers, node))

    def copy(self, out: np.ndarray, src: np.ndarray, node) -> None:
        """``out`` (a new C-contiguous buffer) = ``src`` (C-contiguous, of ``out``'s size), by ``memcpy``."""
        if self.failed is not None:
            return
        try:
            pointers = {0: self._written(out), 1: self.resolve(src)}
        except CaptureFailed as e:
            self.fail(str(e))
            return
        self.ops.append((COPY, 0, out.nbytes, [0, 0], pointers, node))

    def _written(self, out: np.ndarray) -> tuple[int, int]:
        try:
            return self.resolve(out)  # a buffer written again (a kernel over a private matmul result)
        except CaptureFailed:
            if not (out.flags.owndata and (out.flags.c_contiguous or out.flags.f_contiguous)):
                raise
            return self._add("buffer", None, out), 0


class Plan:
    """A recorded call, replayed by :meth:`run`."""

    def __init__(self, rec: Recorder, outputs: list, driver, n_values: int):
        self.driver = driver
        self.lock = threading.Lock()
        fresh: dict[int, int] = {}  # source -> position among this call's new buffers
        self.outputs = []  # (fresh buffer position, offset, shape, strides, dtype, whole)
        for value in outputs:
            if type(value) is not np.ndarray:
                raise CaptureFailed("an output that is not an array")
            source, offset = rec.resolve(value)
            kind, _, _, _, buf = rec.sources[source]
            if kind != "buffer":
                raise CaptureFailed("an output that is not a buffer a kernel wrote")
            position = fresh.setdefault(source, len(fresh))
            whole = value is buf or (offset == 0 and value.shape == buf.shape and value.strides == buf.strides)
            self.outputs.append((position, offset, value.shape, value.strides, value.dtype, whole))
        # the buffers and constants the words point into, kept alive (the returned buffers are new at each call)
        self.keep = [s[4] for k, s in enumerate(rec.sources) if s[0] != "arg" and k not in fresh]
        kept = [s[4] for k, s in enumerate(rec.sources) if k >= rec.program_sources and k not in fresh]
        if sum(a.nbytes for a in kept) > MAX_KEPT_BYTES:  # (buffers, and values computed from shapes)
            raise CaptureFailed("the intermediate buffers are larger than MAX_KEPT_BYTES")
        self.fresh = [(rec.sources[s][4].shape, rec.sources[s][4].dtype, _order(rec.sources[s][4])) for s in fresh]
        words, relocs, ops, self.nodes = [], [], [], []
        for kind, address, stop, op_words, pointers, node in rec.ops:
            first = len(words)
            for position, (source, offset) in pointers.items():
                skind, index, _, _, buf = rec.sources[source]
                if skind == "arg":
                    relocs += [first + position, index, offset]
                elif source in fresh:
                    relocs += [first + position, n_values + fresh[source], offset]
                else:
                    op_words[position] = data_pointer(buf) + offset  # kept by the plan: a fixed address
            words += op_words
            ops += [kind, address, stop, first]
            self.nodes.append(node)
        self.words = (ctypes.c_int64 * max(1, len(words)))(*words)
        self.ops = (ctypes.c_int64 * max(1, len(ops)))(*ops)
        self.relocs = (ctypes.c_int64 * max(1, len(relocs)))(*relocs)
        self.n_ops, self.n_relocs = len(rec.ops), len(relocs) // 3
        self.bases = ctypes.c_int64 * (n_values + len(self.fresh))
        self.addresses = tuple(ctypes.addressof(x) for x in (self.ops, self.words, self.relocs))

    def run(self, values: list, check_status) -> list | None:
        """The outputs of a call with ``values`` (of the recorded layout), or ``None`` while another thread
        replays this plan (the caller then takes the step-by-step path)."""
        if not self.lock.acquire(blocking=False):
            return None
        try:
            buffers = [np.empty(shape, dtype, order=order) for shape, dtype, order in self.fresh]
            bases = self.bases(*map(data_pointer, values), *map(data_pointer, buffers))
            ops, words, relocs = self.addresses
            status = self.driver(ops, self.n_ops, words, relocs, self.n_relocs, ctypes.addressof(bases))
        finally:
            self.lock.release()
        if status:
            check_status(self.nodes[status - 1], 1)
        out = []
        for position, offset, shape, strides, dtype, whole in self.outputs:
            buf = buffers[position]
            out.append(buf if whole else np.ndarray(shape, dtype, buffer=buf, offset=offset, strides=strides))
        return out


def _order(a: np.ndarray) -> str:
    return "C" if a.flags.c_contiguous else "F"


def signature(values: list):
    """The layout key of a call's values (shapes, strides, dtypes: a byte order is part of a dtype), or ``None``
    where one is not a non-empty, aligned array (those calls take the step-by-step path).

    >>> signature([np.zeros((2, 3))]), signature([np.zeros((2, 3)), 1.0])
    ((((2, 3), (24, 8), dtype('float64')),), None)
    """
    key = []
    for v in values:
        if type(v) is not np.ndarray or not v.flags.aligned or v.size == 0:
            return None
        key.append((v.shape, v.strides, v.dtype))
    return tuple(key)


class attached:
    """``with attached(rec):`` records this thread's native calls into ``rec``."""

    def __init__(self, rec: Recorder):
        self.rec = rec

    def __enter__(self):
        _local.recorder = self.rec
        return self.rec

    def __exit__(self, *exc):
        _local.recorder = None
        return False
