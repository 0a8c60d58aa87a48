"""One lazy registry of every pass pullback runs, by its kebab-case name.

Each entry maps a name to `module:ClassName`; the module is imported only when the
pass is asked for, so listing passes stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from xdsl.passes import ModulePass, PassPipeline

_OURS = "pullback.compiler."
PASSES: dict[str, str] = {
    "autodiff": _OURS + "autodiff.reverse:AutodiffPass",
    "jvp": _OURS + "autodiff.forward:JvpPass",
    "vmap": _OURS + "autodiff.vmap:VmapPass",
    "checkpoint": _OURS + "autodiff.checkpoint:CheckpointPass",
    "eager-update": _OURS + "autodiff.eager_update:EagerUpdatePass",
    "simplify": _OURS + "transforms.simplify:SimplifyPass",
    "memory-plan": _OURS + "transforms.memory_plan:MemoryPlanPass",
    "schedule-writes": _OURS + "transforms.schedule_writes:ScheduleWritesPass",
    "convert-array-to-loops": _OURS + "conversion.array_to_loops:ConvertArrayToLoopsPass",
    "convert-loops-to-llvm": _OURS + "conversion.loops_to_llvm:ConvertLoopsToLLVMPass",
    "expand-math": _OURS + "transforms.expand_math:ExpandMathPass",
    "host-call-status": _OURS + "transforms.host_call_status:HostCallStatusPass",
    "canonicalize": "xdsl.transforms.canonicalize:CanonicalizePass",
    "cse": "xdsl.transforms.common_subexpression_elimination:CommonSubexpressionElimination",
    "dce": "xdsl.transforms.dead_code_elimination:DeadCodeElimination",
}


def get_pass(name: str) -> type[ModulePass]:
    """The pass class registered under `name`."""
    if name not in PASSES:
        raise KeyError(
            f"unknown pass '{name}'; registered passes: {', '.join(sorted(PASSES))}"
        )
    module, cls = PASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    """Name -> getter, the shape xDSL's `PassPipeline.parse_spec` expects."""
    return {name: (lambda n=name: get_pass(n)) for name in PASSES}


def parse_pipeline(spec: str) -> PassPipeline:
    """A pipeline from `a,b{opt=1},c` text."""
    return PassPipeline.parse_spec(get_all_passes(), spec)
