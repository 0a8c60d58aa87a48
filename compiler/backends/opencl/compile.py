"""`compile_function`: array-level module → OpenCL C program and launch plan."""

from __future__ import annotations

import time
from typing import Any

from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, TensorType

from pullback.compiler.backends.opencl.devices import (
    context_for,
    describe,
    has_fp64,
    is_gpu,
    select_device,
)
from pullback.compiler.backends.opencl.executable import OpenCLExecutable, numpy_dtype
from pullback.compiler.backends.opencl.kernels import Target
from pullback.compiler.backends.opencl.plan import translate_module, uses_float64
from pullback.compiler.backends.opencl.program import build_program
from pullback.compiler.context import make_context
from pullback.compiler.conversion.array_to_loops import ConvertArrayToLoopsPass

STYLES = ("cpu", "gpu")


def _find(module: ModuleOp, name: str) -> func.FuncOp:
    funcs = [op for op in module.body.block.ops if isinstance(op, func.FuncOp)]
    for f in funcs:
        if f.sym_name.data == name:
            return f
    names = ", ".join(f.sym_name.data for f in funcs) or "none"
    raise KeyError(f"no function @{name} in the module (functions: {names})")


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
    timings: dict[str, float] = {}
    stages: dict[str, str] = {}
    source_fn = _find(module, name)
    in_types = list(source_fn.function_type.inputs)
    out_types = list(source_fn.function_type.outputs)
    for t in (*in_types, *out_types):
        if not isinstance(t, TensorType):
            raise TypeError(f"@{name} must take and return tensors, got {t}")
        numpy_dtype(t.element_type)
    dev = device if device is not None and not isinstance(device, str) else select_device(device)
    target = target_for(dev, style)
    start = time.perf_counter()
    mod = module.clone()
    ConvertArrayToLoopsPass(function=name).apply(make_context(), mod)
    if keep_ir:
        stages["convert-array-to-loops"] = str(mod)
    host = _find(mod, name)
    temp_bytes = host.attributes["pullback.temp_bytes"]
    assert isinstance(temp_bytes, DenseArrayBase)
    timings["lower-to-loops"], start = _lap(start)
    if uses_float64(mod) and not has_fp64(dev):
        raise TypeError(f"@{name} computes in float64, which {describe(dev)} does not support "
                        "(no cl_khr_fp64): use float32 arrays or another device")
    source, steps = translate_module(mod, name, target)
    timings["emit"], start = _lap(start)
    context = context_for(dev)
    program, origin = build_program(context, dev, source)
    timings["build"], start = _lap(start)
    exe = OpenCLExecutable(name, in_types, out_types,
                           [int(v) for v in temp_bytes.get_values()], dev, context, program,
                           steps, source, stages, timings, origin)
    timings["setup"], _ = _lap(start)
    return exe


def _lap(start: float) -> tuple[float, float]:
    now = time.perf_counter()
    return now - start, now
