"""`LLVMExecutable`: a compiled function, called with numpy arrays."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Sequence

import numpy as np
from llvmlite import binding
from xdsl.dialects.builtin import TensorType

from pullback.compiler import host_calls
from pullback.compiler.backends.kernel_level import InputSpec
from pullback.compiler.backends.llvm.arenas import ArenaPool
from pullback.compiler.backends.llvm.packed_entry import packed_name
from pullback.compiler.transforms.memory_plan import MemoryPlan, MemoryReport


class LLVMExecutable:
    """A natively compiled function over arrays.

    `run(inputs)` checks the inputs, allocates fresh outputs and makes one native
    call. Temporaries live in an arena laid out by the static memory plan; each call
    in flight has one of its own from a small pool (`ArenaPool`), so any number of
    threads may run an executable at once, in parallel (ctypes releases the GIL for
    the native call), and one thread calling again and again allocates no arena per
    call. Host calls (showgrad, hooks) run during the native
    call; if one raises, the native code returns at once (no later step runs) with a
    nonzero status, and `run` re-raises the exception.

    Attributes:
        input_types, output_types: the tensor types of the function.
        stages: MLIR text after each lowering stage (only with `keep_ir=True`).
        llvm_ir: the optimized LLVM IR (made on first access when the executable was
            loaded from an object file and given a function that rebuilds it).
        timings: seconds spent per compile stage.
        plan: where each temporary lives in the arena.
        memory: the bytes one call uses (`MemoryReport`).
        host_calls: whether a call runs Python functions (and so can fail midway).
        undo_inputs: the written inputs a failing call may leave partly written (those
            written before the last host call; the code after it cannot fail).
        symbols: the `pullback_*` symbols the machine code calls (BLAS, host calls),
            which must be bound before its object file is loaded in another process.
        object_code: the object file the engine was loaded from, until `take_object`.
    """

    def __init__(self, spec: InputSpec, input_types: Sequence[TensorType],
                 output_types: Sequence[TensorType], plan: MemoryPlan,
                 engine: binding.ExecutionEngine, llvm_ir: str | Callable[[], str],
                 stages: dict[str, str], timings: dict[str, float], host_calls: bool = False,
                 undo_inputs: tuple[int, ...] = (), symbols: tuple[str, ...] = (),
                 object_code: bytes | None = None):
        self.name = spec.name
        self._spec = spec
        self.input_types = tuple(input_types)
        self.output_types = tuple(output_types)
        self._llvm_ir = llvm_ir
        self._llvm_ir_lock = threading.Lock()
        self.symbols = symbols
        self.object_code = object_code
        self.stages = stages
        self.timings = timings
        self._engine = engine
        self.plan = plan
        self.memory = MemoryReport.of(plan, spec.inputs, spec.outputs)
        self.host_calls = host_calls
        self.undo_inputs = undo_inputs
        self._arenas = ArenaPool(plan.arena_bytes, plan.offsets)
        n_args = len(spec.inputs) + len(spec.outputs) + len(plan.offsets)
        address = engine.get_function_address(packed_name(spec.name))
        if not address:
            raise RuntimeError(f"the JIT has no function @{packed_name(spec.name)}")
        self._buffers = ctypes.c_void_p * n_args  # the packed entry's one argument
        self._fn = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p)(address)

    @property
    def spec(self) -> InputSpec:
        """The arrays the function takes and returns."""
        return self._spec

    @property
    def llvm_ir(self) -> str:
        with self._llvm_ir_lock:
            if not isinstance(self._llvm_ir, str):
                self._llvm_ir = self._llvm_ir()
            return self._llvm_ir

    def take_object(self) -> bytes | None:
        """The object file of the machine code, handed over once (then dropped here)."""
        obj, self.object_code = self.object_code, None
        return obj

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Outputs of the function for C-contiguous `inputs` of the exact dtypes and shapes."""
        self._spec.check(inputs)
        outs = self._spec.new_outputs()
        arena = self._arenas.take()  # this call's own scratch memory
        try:
            host_calls.begin()
            status = self._fn(self._buffers(*[a.ctypes.data for a in inputs],
                                            *[o.ctypes.data for o in outs], *arena.pointers))
        finally:
            self._arenas.give(arena)
        host_calls.raise_pending()
        if status != host_calls.OK:
            raise RuntimeError(f"@{self.name} stopped with status {status} and no exception")
        return outs
