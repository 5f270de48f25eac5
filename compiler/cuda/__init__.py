"""The CUDA backend's compiler side: GPU loop drivers, PTX emission with llvmlite, ptxas."""
