"""The driver: one native function that runs a whole recorded call of a program (runtime/replay.py).

``i64 {name}(ptr ops, i64 n_ops, ptr words, ptr relocs, i64 n_relocs, ptr bases)``:

1. patches the argument words: for each relocation ``(word, base, offset)`` (three i64),
   ``words[word] = bases[base] + offset`` (the data pointers of this call's inputs and outputs);
2. runs the ops in order, each four i64 ``(kind, fn, stop, first word)``:

   - kind :data:`KERNEL`: ``i32 fn(0, stop, words + first)``, a kernel entry (kernels.py ABI);
   - kind :data:`SGEMM` / :data:`DGEMM`: cblas ``?gemm`` with 64-bit sizes (numpy's OpenBLAS), its 14
     arguments read from ``words + first``: order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc
     (alpha and beta as the bits of a float or double);

   - kind :data:`COPY`: ``memcpy(words[first], words[first + 1], stop)`` (two pointers; ``stop`` bytes);

3. returns 0, or ``k + 1`` where op ``k`` (a kernel) returned nonzero: the caller raises that node's error.

The Python work of a call is then finding the plan, allocating the outputs and one ctypes call.

>>> mod = build_driver_module("drive")
>>> [f.name for f in mod.functions if not f.is_declaration]
['drive']
"""

from __future__ import annotations

from llvmlite import ir

from .kernels import counted_loop

I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()
KERNEL, SGEMM, DGEMM, COPY = 0, 1, 2, 3
#: words per op record
OP_WORDS = 4


class _Indirect:
    """A function address as a call's callee: llvmlite's ``call`` reads the callee's ``function_type``, which an
    opaque ``ptr`` value does not carry."""

    def __init__(self, pointer: ir.Value, function_type: ir.FunctionType):
        self.pointer = pointer
        self.type = pointer.type
        self.function_type = function_type

    def get_reference(self) -> str:
        return self.pointer.get_reference()


def build_driver_module(name: str) -> ir.Module:
    """A module holding only the driver function ``name``."""
    module = ir.Module(name=name)
    add_driver(module, name)
    return module


def add_driver(module: ir.Module, name: str) -> ir.Function:
    """Add the driver function ``name`` to ``module`` (see the module docstring)."""
    fn = ir.Function(module, ir.FunctionType(I64, [PTR, I64, PTR, PTR, I64, PTR]), name)
    ops, n_ops, words, relocs, n_relocs, bases = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def word(b, base, k):
        return b.load(b.gep(base, [k], source_etype=I64), typ=I64)

    def relocate(b, r, state):
        at = b.mul(r, ir.Constant(I64, 3))
        target = word(b, relocs, at)
        base = word(b, relocs, b.add(at, ir.Constant(I64, 1)))
        offset = word(b, relocs, b.add(at, ir.Constant(I64, 2)))
        b.store(b.add(word(b, bases, base), offset), b.gep(words, [target], source_etype=I64))
        return state

    zero = ir.Constant(I64, 0)
    counted_loop(b, fn, zero, n_relocs, [], relocate, "reloc")

    kernel_ty = ir.FunctionType(I32, [I64, I64, PTR])
    gemms = []
    for kind, scalar in ((SGEMM, ir.FloatType()), (DGEMM, ir.DoubleType())):
        # void ?gemm(order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        args = [I32] * 3 + [I64] * 3 + [scalar, PTR, I64, PTR, I64, scalar, PTR, I64]
        gemms.append((kind, scalar, ir.FunctionType(ir.VoidType(), args)))
    fail = fn.append_basic_block("fail")
    failures = []  # (op index + 1, block) of the kernel calls that branch to ``fail``

    def callee(b, address, fnty):
        return _Indirect(b.inttoptr(address, PTR), fnty)

    def run(b, k, state):
        at = b.mul(k, ir.Constant(I64, OP_WORDS))
        kind = word(b, ops, at)
        address = word(b, ops, b.add(at, ir.Constant(I64, 1)))
        stop = word(b, ops, b.add(at, ir.Constant(I64, 2)))
        args = b.gep(words, [word(b, ops, b.add(at, ir.Constant(I64, 3)))], source_etype=I64)
        done = fn.append_basic_block("op.done")
        kernel = fn.append_basic_block("op.kernel")
        switch = b.switch(kind, done)
        switch.add_case(ir.Constant(I64, KERNEL), kernel)
        b.position_at_end(kernel)
        status = b.call(callee(b, address, kernel_ty), [zero, stop, args])
        failures.append((b.add(k, ir.Constant(I64, 1)), b.block))
        b.cbranch(b.icmp_signed("!=", status, ir.Constant(I32, 0)), fail, done)
        for kind_value, scalar, fnty in gemms:
            block = fn.append_basic_block(f"op.gemm{kind_value}")
            switch.add_case(ir.Constant(I64, kind_value), block)
            b.position_at_end(block)
            values = []
            for j in range(14):
                v = word(b, args, ir.Constant(I64, j))
                if j < 3:
                    v = b.trunc(v, I32)
                elif j in (6, 11):  # alpha, beta: the bits of a float or a double
                    v = b.bitcast(b.trunc(v, I32) if kind_value == SGEMM else v, scalar)
                elif j in (7, 9, 12):  # a, b, c
                    v = b.inttoptr(v, PTR)
                values.append(v)
            b.call(callee(b, address, fnty), values)
            b.branch(done)
        block = fn.append_basic_block("op.copy")
        switch.add_case(ir.Constant(I64, COPY), block)
        b.position_at_end(block)
        dst, src = (b.inttoptr(word(b, args, ir.Constant(I64, j)), PTR) for j in range(2))
        b.call(memcpy, [dst, src, stop, ir.Constant(ir.IntType(1), 0)])
        b.branch(done)
        b.position_at_end(done)
        return state

    memcpy = ir.Function(
        module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, ir.IntType(1)]), "llvm.memcpy.p0.p0.i64"
    )
    counted_loop(b, fn, zero, n_ops, [], run, "ops")
    b.ret(zero)
    b.position_at_end(fail)
    which = b.phi(I64)
    for value, block in failures:
        which.add_incoming(value, block)
    b.ret(which)
    return fn
