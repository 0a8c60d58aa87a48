"""`compile_function`: array-level module → OpenCL C program and launch plan."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from pullback.compiler.backends.kernel_level import lap, lower_to_kernels
from pullback.compiler.backends.opencl.devices import (
    context_for,
    describe,
    has_fp64,
    is_gpu,
    select_device,
)
from pullback.compiler.backends.opencl.executable import OpenCLExecutable
from pullback.compiler.backends.opencl.kernels import Target
from pullback.compiler.backends.opencl.plan import translate_module, uses_float64
from pullback.compiler.backends.opencl.program import build_program
from pullback.compiler.pass_runner import PassHooks

STYLES = ("cpu", "gpu")


def target_for(device: Any, style: str | None = None) -> Target:
    """Kernel shapes for `device`; `style` ("cpu" / "gpu") overrides its kind."""
    if style is not None and style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    chosen = style or ("gpu" if is_gpu(device) else "cpu")
    return Target(chosen, int(device.max_work_group_size), int(device.max_compute_units))


def compile_function(module: ModuleOp, name: str, *, keep_ir: bool = False,
                     device: str | Any | None = None, style: str | None = None,
                     passes: str | None = None, hooks: PassHooks | None = None,
                     taken: Sequence[str] = ()) -> OpenCLExecutable:
    """Compile function `@name` of an array-level module for an OpenCL device.

    The caller's module is not changed. `device` is a `select_device` spec (or a
    `pyopencl.Device`); `style` forces CPU- or GPU-shaped kernels (default: the
    device's kind). The lowering runs pipeline text `passes` (default
    `kernel_pipeline(name)`; the OpenCL C is emitted from its kernel-level result,
    which is not a pass); `hooks` and `taken` as for `lower_to_kernels`. With
    `keep_ir`, `stages` holds the MLIR text after each pass.
    """
    dev = device if device is not None and not isinstance(device, str) else select_device(device)
    target = target_for(dev, style)
    lowered = lower_to_kernels(module, name, keep_ir, passes=passes, hooks=hooks, taken=taken)
    mod, timings = lowered.module, lowered.timings
    start = time.perf_counter()
    if uses_float64(mod) and not has_fp64(dev):
        raise TypeError(f"@{name} computes in float64, which {describe(dev)} does not support "
                        "(no cl_khr_fp64): use float32 arrays or another device")
    source, steps = translate_module(mod, name, target)
    timings["emit"], start = lap(start)
    context = context_for(dev)
    program, origin = build_program(context, dev, source)
    timings["build"], start = lap(start)
    exe = OpenCLExecutable(lowered.spec, lowered.input_types, lowered.output_types,
                           lowered.memory, dev, context, program, steps, source,
                           lowered.stages, timings, origin)
    timings["setup"], _ = lap(start)
    return exe
