"""`LLVMExecutable`: a compiled function, called with numpy arrays."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np
from llvmlite import binding
from xdsl.dialects.builtin import TensorType

from pullback.compiler import host_calls
from pullback.compiler.backends.kernel_level import InputSpec
from pullback.compiler.transforms.memory_plan import MemoryPlan, MemoryReport


class LLVMExecutable:
    """A natively compiled function over arrays.

    `run(inputs)` checks the inputs, allocates fresh outputs and makes one native
    call. Temporaries live in one arena laid out by the static memory plan,
    allocated once and reused by every call, so an executable must not be run from
    several threads at once. Host calls (showgrad, hooks) run during the native
    call; if one raises, the later ones are skipped, the native code finishes, and
    `run` re-raises the exception.

    Attributes:
        input_types, output_types: the tensor types of the function.
        stages: MLIR text after each lowering stage (only with `keep_ir=True`).
        llvm_ir: the optimized LLVM IR.
        timings: seconds spent per compile stage.
        plan: where each temporary lives in the arena.
        memory: the bytes one call uses (`MemoryReport`).
    """

    def __init__(self, spec: InputSpec, input_types: Sequence[TensorType],
                 output_types: Sequence[TensorType], plan: MemoryPlan,
                 engine: binding.ExecutionEngine, llvm_ir: str, stages: dict[str, str],
                 timings: dict[str, float]):
        self.name = spec.name
        self._spec = spec
        self.input_types = tuple(input_types)
        self.output_types = tuple(output_types)
        self.llvm_ir = llvm_ir
        self.stages = stages
        self.timings = timings
        self._engine = engine
        self.plan = plan
        self.memory = MemoryReport.of(plan, spec.inputs, spec.outputs)
        self._arena = np.empty(plan.arena_bytes, np.uint8)
        base = self._arena.ctypes.data
        self._temp_ptrs = [base + offset for offset in plan.offsets]
        n_args = len(spec.inputs) + len(spec.outputs) + len(self._temp_ptrs)
        address = engine.get_function_address(spec.name)
        if not address:
            raise RuntimeError(f"the JIT has no function @{spec.name}")
        self._fn = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * n_args)(address)

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Outputs of the function for C-contiguous `inputs` of the exact dtypes and shapes."""
        self._spec.check(inputs)
        outs = self._spec.new_outputs()
        host_calls.begin()
        self._fn(*[a.ctypes.data for a in inputs], *[o.ctypes.data for o in outs],
                 *self._temp_ptrs)
        host_calls.raise_pending()
        return outs
