"""The CPU backend: kernel-level IR → llvm dialect → LLVM O3 → MCJIT, BLAS for matmul."""

from pullback.compiler.backends.llvm.compile import compile_function
from pullback.compiler.backends.llvm.executable import LLVMExecutable

__all__ = ["LLVMExecutable", "compile_function"]
