"""What both backends share: lowering to the kernel level, and checking call inputs.

`lower_to_kernels` takes an array-level module to the kernel-level IR that every
target consumes by running pipeline text (`kernel_pipeline`: `keep-functions` of the
entry, the passes of `KERNEL_PASSES`, then `memory-plan`; a target adds its own
passes after them), recording the
function's signature, where its temporaries live in one arena and, with `keep_ir`,
the text after each pass; `InputSpec.check` validates the arrays a compiled function
is called with.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    AnyFloat,
    DenseArrayBase,
    ModuleOp,
    TensorType,
    f32,
    f64,
    i1,
    i64,
)
from xdsl.ir import Attribute
from xdsl.passes import ModulePass

from pullback.compiler.diagnostics import verify
from pullback.compiler.pass_runner import PassHooks, run_pipeline
from pullback.compiler.passes import pass_text
from pullback.compiler.transforms.keep_functions import KeepFunctionsPass
from pullback.compiler.transforms.memory_plan import MemoryPlan, MemoryPlanPass, plan_memory

_DTYPES: dict[Attribute, np.dtype] = {
    f64: np.dtype(np.float64), f32: np.dtype(np.float32), i64: np.dtype(np.int64),
    i1: np.dtype(np.bool_),
}


def numpy_dtype(element_type: Attribute) -> np.dtype:
    """The numpy dtype of an element type."""
    if element_type not in _DTYPES:
        kind = "float" if isinstance(element_type, AnyFloat) else "element"
        raise TypeError(f"{kind} type {element_type} is not supported (f64, f32, i64, i1)")
    return _DTYPES[element_type]


def debug() -> bool:
    """Whether `PULLBACK_DEBUG` asks for IR verification after each stage."""
    return os.environ.get("PULLBACK_DEBUG", "") not in ("", "0")


def find_function(module: ModuleOp, name: str) -> func.FuncOp:
    funcs = [op for op in module.body.block.ops if isinstance(op, func.FuncOp)]
    for f in funcs:
        if f.sym_name.data == name:
            return f
    names = ", ".join(f.sym_name.data for f in funcs) or "none"
    raise KeyError(f"no function @{name} in the module (functions: {names})")


def lap(start: float) -> tuple[float, float]:
    """Seconds since `start`, and now."""
    now = time.perf_counter()
    return now - start, now


@dataclasses.dataclass
class InputSpec:
    """The arrays a compiled function takes and returns."""

    name: str
    inputs: list[tuple[np.dtype, tuple[int, ...]]]
    outputs: list[tuple[np.dtype, tuple[int, ...]]]
    written: tuple[int, ...] = ()
    """Inputs the function writes in place (`array.assign`)."""

    def check(self, arrays: Sequence[object]) -> None:
        """Raise a ValueError naming the first input that is not as compiled."""
        if len(arrays) != len(self.inputs):
            raise ValueError(f"@{self.name} takes {len(self.inputs)} arrays, got {len(arrays)}")
        for i, (a, (dtype, shape)) in enumerate(zip(arrays, self.inputs, strict=True)):
            if (not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape
                    or not a.flags.c_contiguous):
                raise ValueError(self._bad_input(i, a, dtype, shape))
        for i in self.written:
            a = arrays[i]
            assert isinstance(a, np.ndarray)
            if not a.flags.writeable:
                dtype, shape = self.inputs[i]
                raise ValueError(
                    f"@{self.name} writes its input {i} in place, so the caller's array must "
                    f"be passed as it is: a writeable, C-contiguous {dtype} numpy array of "
                    f"shape {shape} (a number, a read-only array or one that needs converting "
                    "would lose the write)")
        if self.written:
            self._check_no_aliases(arrays)  # type: ignore[arg-type]

    def _check_no_aliases(self, arrays: Sequence[np.ndarray]) -> None:
        """A written input must share no byte with another input: one sorted sweep over
        the inputs' extents; only where two extents meet are the pairs examined."""
        extents = sorted((a.ctypes.data, a.nbytes, i) for i, a in enumerate(arrays) if a.nbytes)
        reach = -1
        for start, n, _ in extents:
            if start < reach:
                break
            reach = max(reach, start + n)
        else:
            return
        written = set(self.written)
        for x, (start, n, i) in enumerate(extents):
            for other, _, j in extents[x + 1:]:
                if other >= start + n:
                    break
                if i in written or j in written:
                    k, l = (i, j) if i in written else (j, i)
                    raise ValueError(f"@{self.name} writes input {k} in place, so it must not "
                                     f"share memory with another input (input {l})")

    def new_outputs(self) -> list[np.ndarray]:
        return [np.empty(shape, dtype) for dtype, shape in self.outputs]

    def _bad_input(self, i: int, a: object, dtype: np.dtype, shape: tuple[int, ...]) -> str:
        want = f"a C-contiguous {dtype} array of shape {shape}"
        if not isinstance(a, np.ndarray):
            return f"@{self.name} input {i}: expected {want}, got {type(a).__name__}"
        layout = "C-contiguous" if a.flags.c_contiguous else "non-contiguous"
        return (f"@{self.name} input {i}: expected {want}, got a {layout} {a.dtype} array "
                f"of shape {a.shape}")


def _spec(t: Attribute) -> tuple[np.dtype, tuple[int, ...]]:
    assert isinstance(t, TensorType)
    return numpy_dtype(t.element_type), tuple(t.get_shape())


@dataclasses.dataclass
class KernelModule:
    """A function lowered to the kernel level, with what its callers need to know."""

    module: ModuleOp
    name: str
    input_types: list[TensorType]
    output_types: list[TensorType]
    memory: MemoryPlan
    stages: dict[str, str]
    timings: dict[str, float]
    written: tuple[int, ...] = ()
    symbols: frozenset[str] = frozenset()
    """The functions of the kernel-level module (kernels, matrix products, host calls)."""

    @property
    def spec(self) -> InputSpec:
        return InputSpec(self.name, [_spec(t) for t in self.input_types],
                         [_spec(t) for t in self.output_types], self.written)


KERNEL_PASSES = ("inline-checkpoints", "drop-eager-updates", "drop-identities",
                 "schedule-writes", "fuse", "bufferize", "convert-kernels-to-loops")
"""The passes from array functions after AD to kernel-level IR, in order (each
device's lowering starts with `keep-functions` of its entry, these, and `memory-plan`)."""


def kernel_pipeline(name: str) -> str:
    """The pipeline text from an array-level module to the kernel level of `@name`."""
    keep = pass_text(KeepFunctionsPass(names=(name,)))
    return ",".join((keep, *KERNEL_PASSES, "memory-plan"))


def lower_to_kernels(module: ModuleOp, name: str, keep_ir: bool, *, passes: str | None = None,
                     hooks: PassHooks | None = None, taken: Sequence[str] = ()) -> KernelModule:
    """A clone of `module` with `@name` lowered by pipeline text `passes` (default
    `kernel_pipeline(name)`; a target's text starts with it and goes on to its own
    passes). `hooks` run around each pass as well; `taken` are the stage keys of the
    passes that made `module` (for passes that run again)."""
    source = find_function(module, name)
    in_types = list(source.function_type.inputs)
    out_types = list(source.function_type.outputs)
    for t in (*in_types, *out_types):
        if not isinstance(t, TensorType):
            raise TypeError(f"@{name} must take and return tensors, got {t}")
        numpy_dtype(t.element_type)
    text = kernel_pipeline(name) if passes is None else passes
    lowered = KernelModule(module.clone(), name, in_types, out_types, _NO_PLAN, {},
                           hooks.timings if hooks else {})
    outer = hooks or PassHooks()

    def after(key: str, p: ModulePass, mod: ModuleOp) -> None:
        if isinstance(p, MemoryPlanPass):  # the plan the pass recorded, for the executors
            host = find_function(mod, name)
            lowered.memory = plan_memory(host, p.alignment)
            written = host.attributes.get("pullback.written_inputs")
            assert isinstance(written, DenseArrayBase)
            lowered.written = tuple(int(i) for i in written.get_values())
            lowered.symbols = frozenset(op.sym_name.data for op in mod.body.block.ops
                                        if isinstance(op, func.FuncOp))
        if debug():
            verify(mod)
        if keep_ir:
            lowered.stages[key] = str(mod)
        if outer.after is not None:
            outer.after(key, p, mod)

    run_pipeline(text, lowered.module, PassHooks(outer.before, after, lowered.timings),
                 taken=taken)
    if lowered.memory is _NO_PLAN:
        raise ValueError(f"the lowering pipeline {text!r} must lower to the kernel level "
                         f"({', '.join(KERNEL_PASSES)}) and run memory-plan")
    return lowered


_NO_PLAN = MemoryPlan((), (), (), 0, 1)
