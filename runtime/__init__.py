"""sympile.runtime: turns the compiler's output into callables (numpy interpreter, LLVM JIT, CUDA)."""

from sympile.compiler.graph import register_internal_dir

register_internal_dir(__file__)
