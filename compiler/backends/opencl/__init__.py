"""The OpenCL backend: kernel-level IR → OpenCL C → pyopencl program + launch plan.

Importing this package does not import pyopencl; `available()` says whether a
device exists, and `compile_function` raises `OpenCLUnavailableError` (saying what
to install) when none does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pullback.compiler.backends.opencl.devices import (
    OpenCLUnavailableError,
    available,
    list_devices,
    select_device,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from xdsl.dialects.builtin import ModuleOp

    from pullback.compiler.backends.opencl.executable import OpenCLExecutable
    from pullback.compiler.pass_runner import PassHooks

__all__ = ["OpenCLExecutable", "OpenCLUnavailableError", "available", "compile_function",
           "list_devices", "select_device"]


def compile_function(module: ModuleOp, name: str, *, keep_ir: bool = False,
                     device: str | Any | None = None, style: str | None = None,
                     passes: str | None = None, hooks: PassHooks | None = None,
                     taken: Sequence[str] = ()) -> OpenCLExecutable:
    """Compile `@name` of an array-level module for an OpenCL device (see `compile.py`)."""
    from pullback.compiler.backends.opencl.compile import compile_function as compile_

    return compile_(module, name, keep_ir=keep_ir, device=device, style=style, passes=passes,
                    hooks=hooks, taken=taken)


def __getattr__(name: str) -> Any:
    if name == "OpenCLExecutable":
        from pullback.compiler.backends.opencl.executable import OpenCLExecutable

        return OpenCLExecutable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
