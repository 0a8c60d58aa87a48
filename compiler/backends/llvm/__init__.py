"""The CPU backend: kernel-level IR → llvm dialect → LLVM O3 → MCJIT, BLAS for matmul.

`compile_function` and `LLVMExecutable` are imported on first use: loading a program
from the disk cache (`object_entry`) needs neither the lowerings nor LLVM's passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pullback.compiler.backends.llvm.compile import compile_function
    from pullback.compiler.backends.llvm.executable import LLVMExecutable

__all__ = ["LLVMExecutable", "compile_function"]


def __getattr__(name: str) -> Any:
    if name == "compile_function":
        from pullback.compiler.backends.llvm.compile import compile_function

        return compile_function
    if name == "LLVMExecutable":
        from pullback.compiler.backends.llvm.executable import LLVMExecutable

        return LLVMExecutable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
