"""Array-object entry points: an elementwise kernel called with the addresses of numpy array objects.

``i32 {name}_a(i64 start, i64 stop, ptr objects)`` reads each array's data pointer from its object (the ``data``
field of numpy's public ``PyArrayObject_fields``, ``data_offset`` bytes in) and calls ``{name}_c``. Python then
passes ``id(array)`` words, which cost nothing to get, instead of data pointers (0.2 us each through ctypes):
this is the per-call path of small arrays. The caller guarantees what ``{name}_c`` needs (C-contiguous,
aligned, one shape) and keeps the arrays alive during the call.

>>> from sympile.compiler.ops.fused import Composite
>>> from .kernels import KernelSpec, build_module
>>> spec = KernelSpec("k0", Composite(1, (("exp", (0,), ()),), ("float64", "float64")), (False,), 1)
>>> mod = build_module([spec])
>>> add_object_entries(mod, [spec], 16)
['k0_a']
"""

from __future__ import annotations

from llvmlite import ir

I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()


def add_object_entries(module: ir.Module, specs: list, data_offset: int) -> list[str]:
    """Add ``{name}_a`` for every elementwise (non-reduction) spec in ``module``; returns the new symbols."""
    added = []
    for spec in specs:
        if spec.reduce:
            continue
        n = len(spec.scalar_inputs) + 1  # the inputs, then the output
        fn = ir.Function(module, ir.FunctionType(I32, [I64, I64, PTR]), f"{spec.name}_a")
        start, stop, objects = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        words = b.alloca(I64, size=n)
        for k in range(n):
            obj = b.load(b.gep(objects, [ir.Constant(I64, k)], source_etype=I64), typ=I64)
            field = b.inttoptr(b.add(obj, ir.Constant(I64, data_offset)), I64.as_pointer())
            b.store(b.load(field, typ=I64), b.gep(words, [ir.Constant(I64, k)], source_etype=I64))
        b.ret(b.call(module.get_global(f"{spec.name}_c"), [start, stop, b.bitcast(words, PTR)]))
        added.append(fn.name)
    return added
