"""From a traced program to native code: AD passes, cleanup, lowering, JIT; and the cache.

The compile cache is keyed by the program's structural key (the traced IR's shape,
not its Python identity) plus mode, options and device, so re-tracing the same code
through a new lambda finds the compiled code, while closed-over arrays stay inputs.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any

from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp

from pullback.compiler.context import make_context
from pullback.compiler.passes import get_pass
from pullback.devices import backend_of
from pullback.program import Program

MODES = ("value", "gradient", "pullback")
CLEANUP = ("simplify", "cse", "dce")


@dataclasses.dataclass
class Built:
    """A compiled program and what its native entry point returns."""

    executable: Any
    entry: str
    grad_args: tuple[int, ...]   # argument indices whose gradients follow the results
    num_results: int
    stages: dict[str, str]
    timings: dict[str, float]

    def run(self, inputs: list[Any]) -> list[Any]:
        return self.executable.run(inputs)


@dataclasses.dataclass
class CacheStats:
    hits: int = 0
    compiles: int = 0


_CACHE: dict[Any, Built] = {}
STATS = CacheStats()


def clear_caches() -> None:
    """Forget every compiled program held in memory."""
    _CACHE.clear()


def cache_info() -> CacheStats:
    """How often the compile cache answered, and how often code was compiled."""
    return dataclasses.replace(STATS)


def compiled(program: Program, mode: str, device: str, *, keep_ir: bool = False,
             cotangents: tuple[int, ...] = ()) -> Built:
    """The compiled form of `program` in `mode`, from the cache when possible."""
    key = (program.key, mode, cotangents, device)
    hit = _CACHE.get(key)
    if hit is not None and (hit.stages or not keep_ir):
        STATS.hits += 1
        return hit
    built = build(program, mode, device, keep_ir=keep_ir, cotangents=cotangents)
    STATS.compiles += 1
    _CACHE[key] = built
    return built


def _printing() -> bool:
    return os.environ.get("PULLBACK_PRINT_IR", "") == "after-all"


class _Recorder:
    def __init__(self, keep_ir: bool):
        self.keep = keep_ir or _printing()
        self.stages: dict[str, str] = {}
        self.timings: dict[str, float] = {}

    def stage(self, name: str, module: ModuleOp) -> None:
        if not self.keep:
            return
        text = str(module)
        self.stages[name] = text
        if _printing():
            print(f"// -----// IR after {name} //----- //\n{text}\n", file=sys.stderr)

    def timed(self, name: str, start: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


def build(program: Program, mode: str, device: str, *, keep_ir: bool = False,
          cotangents: tuple[int, ...] = ()) -> Built:
    """Run the pass pipeline for `mode` and compile the entry function for `device`."""
    if mode not in MODES:
        raise ValueError(f"unknown mode '{mode}'; accepted modes: {', '.join(MODES)}")
    ctx = make_context()
    module = program.module.clone()
    rec = _Recorder(keep_ir)
    rec.stage("trace", module)
    entry, grad_args = program.name, ()
    if mode != "value":
        t0 = time.perf_counter()
        pass_cls = get_pass("autodiff")
        pass_cls(func=program.name, wrt=tuple(program.diff_args()), cotangents=cotangents,
                 seed=(mode == "gradient")).apply(ctx, module)
        entry = program.name + "_vjp"
        _keep_only(module, entry)
        grad_args = _int_array_attr(_function(module, entry), "pullback.wrt")
        rec.timed("autodiff", t0)
        rec.stage("autodiff", module)
    t0 = time.perf_counter()
    for name in CLEANUP:
        get_pass(name)().apply(ctx, module)
    rec.timed("simplify", t0)
    rec.stage("simplify", module)
    fn = _function(module, entry)
    num_results = len(fn.function_type.outputs.data) - len(grad_args)
    executable = _compile_for(device, module, entry, rec.keep)
    for stage, text in getattr(executable, "stages", {}).items():
        rec.stages[stage] = text
        if _printing():
            print(f"// -----// IR after {stage} //----- //\n{text}\n", file=sys.stderr)
    rec.timings.update(getattr(executable, "timings", {}))
    if _printing():
        print(f"// -----// {target_code_name(device)} //----- //\n"
              f"{target_code(executable)}\n", file=sys.stderr)
    return Built(executable, entry, grad_args, num_results, rec.stages, rec.timings)


def _compile_for(device: str, module: ModuleOp, entry: str, keep_ir: bool) -> Any:
    kind, spec = backend_of(device)
    if kind == "opencl":
        from pullback.compiler.backends import opencl

        return opencl.compile_function(module, entry, keep_ir=keep_ir, device=spec)
    from pullback.compiler.backends import llvm

    return llvm.compile_function(module, entry, keep_ir=keep_ir)


def target_code_name(device: str) -> str:
    return "OpenCL C" if backend_of(device)[0] == "opencl" else "LLVM IR"


def target_code(executable: Any) -> str:
    """The generated code of an executable: OpenCL C source or optimised LLVM IR."""
    return getattr(executable, "opencl_source", None) or executable.llvm_ir


def _function(module: ModuleOp, name: str) -> func.FuncOp:
    for op in module.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == name:
            return op
    raise KeyError(f"no function @{name} in the module")


def _keep_only(module: ModuleOp, name: str) -> None:
    for op in list(module.ops):
        if isinstance(op, func.FuncOp) and op.sym_name.data != name:
            op.detach()
            op.erase()


def _int_array_attr(fn: func.FuncOp, name: str) -> tuple[int, ...]:
    attr = fn.attributes.get(name)
    if attr is None:
        return ()
    assert isinstance(attr, DenseArrayBase)
    return tuple(int(v) for v in attr.get_values())
