"""LLVM code generation: the llvmlite gate (target.py) and the vectorizable math library (mathlib.py)."""
