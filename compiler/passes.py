"""One lazy registry of every pass pullback runs, by its kebab-case name.

Each built-in entry maps a name to `module:ClassName`; the module is imported only
when the pass is asked for, so listing passes stays cheap. `register_pass` adds a
pass class from outside the package; `pb.compile(..., passes=...)` can then insert it
into a mode's pipeline.
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
    "inline-checkpoints": _OURS + "autodiff.checkpoint:CheckpointPass",
    "drop-eager-updates": _OURS + "autodiff.eager_update:EagerUpdatePass",
    "bind-zeros": _OURS + "transforms.bind_zeros:BindZerosPass",
    "keep-results": _OURS + "transforms.keep_results:KeepResultsPass",
    "keep-functions": _OURS + "transforms.keep_functions:KeepFunctionsPass",
    "drop-derivative-terms": _OURS + "transforms.drop_derivative_terms:DropDerivativeTermsPass",
    "expand-forward": _OURS + "autodiff.forward_region:ExpandForwardPass",
    "simplify": _OURS + "transforms.simplify:SimplifyPass",
    "memory-plan": _OURS + "transforms.memory_plan:MemoryPlanPass",
    "schedule-writes": _OURS + "transforms.schedule_writes:ScheduleWritesPass",
    "drop-identities": _OURS + "transforms.drop_identities:DropIdentitiesPass",
    "fuse": _OURS + "transforms.fuse:FusePass",
    "bufferize": _OURS + "conversion.bufferize:BufferizePass",
    "convert-kernels-to-loops": _OURS + "conversion.kernels_to_loops:ConvertKernelsToLoopsPass",
    "convert-array-to-loops": _OURS + "conversion.array_to_loops:ConvertArrayToLoopsPass",
    "convert-parallel-to-for": _OURS + "conversion.parallel_to_for:ConvertParallelToForPass",
    "convert-loops-to-llvm": _OURS + "conversion.loops_to_llvm:ConvertLoopsToLLVMPass",
    "expand-math": _OURS + "transforms.expand_math:ExpandMathPass",
    "host-call-status": _OURS + "transforms.host_call_status:HostCallStatusPass",
    "canonicalize": "xdsl.transforms.canonicalize:CanonicalizePass",
    "cse": "xdsl.transforms.common_subexpression_elimination:CommonSubexpressionElimination",
    "dce": "xdsl.transforms.dead_code_elimination:DeadCodeElimination",
}

_REGISTERED: dict[str, type[ModulePass]] = {}
"""Passes added by `register_pass`, by name."""


def register_pass(name: str, cls: type[ModulePass]) -> None:
    """Make the `ModulePass` subclass `cls` available as `name` to pipelines (`pullback
    opt -p`, `parse_pipeline`) and to `pb.compile(..., passes=...)`.

    `cls.name` must be `name` (pipeline text names a pass by it), and `name` must not
    be taken: built-in and registered passes cannot be replaced.
    """
    if not (isinstance(cls, type) and issubclass(cls, ModulePass)):
        raise TypeError(f"register_pass({name!r}, ...) needs a subclass of "
                        f"xdsl.passes.ModulePass, got {cls!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_pass needs a non-empty pass name, got {name!r}")
    if name in PASSES or name in _REGISTERED:
        raise ValueError(f"a pass named '{name}' is already registered (registered passes: "
                         f"{', '.join(pass_names())}); choose another name")
    if getattr(cls, "name", None) != name:
        raise ValueError(f"register_pass({name!r}, {cls.__name__}): the class's `name` "
                         f"attribute must be {name!r} (pipeline text names a pass by it), "
                         f"got {getattr(cls, 'name', None)!r}")
    _REGISTERED[name] = cls


def pass_names() -> list[str]:
    """Every registered pass name, sorted."""
    return sorted([*PASSES, *_REGISTERED])


def is_builtin(name: str) -> bool:
    """Whether `name` is one of pullback's own passes (or an xDSL one it registers)."""
    return name in PASSES


def get_pass(name: str) -> type[ModulePass]:
    """The pass class registered under `name`."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in PASSES:
        raise KeyError(f"unknown pass '{name}'; registered passes: {', '.join(pass_names())}")
    module, cls = PASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    """Name -> getter, the shape xDSL's `PassPipeline.parse_spec` expects."""
    return {name: (lambda n=name: get_pass(n)) for name in pass_names()}


def parse_pipeline(spec: str) -> PassPipeline:
    """A pipeline from `a,b{opt=1},c` text."""
    return PassPipeline.parse_spec(get_all_passes(), spec)


def pass_text(p: ModulePass) -> str:
    """`p` as pipeline text (`name{option=value ...}`; options at their default left
    out), which `parse_pipeline` reads back as an equal pass."""
    return str(p.pipeline_pass_spec())
