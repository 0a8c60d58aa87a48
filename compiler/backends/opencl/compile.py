"""`compile_function`: array-level module → OpenCL C program and launch plan."""

from __future__ import annotations

import time
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

STYLES = ("cpu", "gpu")


def target_for(device: Any, style: str | None = None) -> Target:
    """Kernel shapes for `device`; `style` ("cpu" / "gpu") overrides its kind."""
    if style is not None and style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    chosen = style or ("gpu" if is_gpu(device) else "cpu")
    return Target(chosen, int(device.max_work_group_size), int(device.max_compute_units))


def compile_function(module: ModuleOp, name: str, *, keep_ir: bool = False,
                     device: str | Any | None = None,
                     style: str | None = None) -> OpenCLExecutable:
    """Compile function `@name` of an array-level module for an OpenCL device.

    The caller's module is not changed. `device` is a `select_device` spec (or a
    `pyopencl.Device`); `style` forces CPU- or GPU-shaped kernels (default: the
    device's kind). With `keep_ir`, `stages` holds the MLIR text after lowering.
    """
    dev = device if device is not None and not isinstance(device, str) else select_device(device)
    target = target_for(dev, style)
    lowered = lower_to_kernels(module, name, keep_ir)
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
