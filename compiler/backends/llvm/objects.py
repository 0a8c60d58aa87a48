"""Object files for kernel libraries: one compiled function as relocatable machine code.

The function is lowered as for the JIT (`lower_to_llvm`) with matrix products of
pullback's own (no BLAS to link), then every definition but the packed entry becomes
internal, and the packed entry is renamed to `symbol` with hidden visibility: the
object defines exactly one global symbol, which no program outside the shared library
can see, so any number of functions and libraries link side by side.
"""

from __future__ import annotations

import dataclasses

from llvmlite import binding, ir
from xdsl.dialects.builtin import ModuleOp

from pullback.compiler.backends.kernel_level import InputSpec
from pullback.compiler.backends.llvm import jit
from pullback.compiler.backends.llvm.compile import MatmulDefiner, lower_to_llvm
from pullback.compiler.backends.llvm.packed_entry import packed_name
from pullback.compiler.transforms.memory_plan import MemoryPlan


@dataclasses.dataclass
class FunctionObject:
    """Object code of one function, with the arrays it takes and its memory plan."""

    code: bytes
    spec: InputSpec
    plan: MemoryPlan


def function_object(module: ModuleOp, function: str, symbol: str,
                    machine: binding.TargetMachine, matmul: MatmulDefiner,
                    passes: str | None = None) -> FunctionObject:
    """Relocatable object code of `@function` of an array-level module, whose one global
    symbol `symbol` is `int32_t symbol(void **buffers)` (inputs, outputs, temporaries);
    `passes` is the lowering pipeline text (default: `llvm_pipeline(function)`)."""
    low = lower_to_llvm(module, function, matmul=matmul, passes=passes)
    if low.host_call_symbols:
        raise ValueError(f"@{function} calls Python ({', '.join(low.host_call_symbols)}); "
                         "an object file cannot hold it")
    ref = jit.parse(low.ll, machine)
    entry = packed_name(function)
    for value in (*ref.functions, *ref.global_variables):
        if value.is_declaration:
            continue
        if value.name == entry:
            value.name = symbol
            value.visibility = "hidden"
        else:
            value.linkage = "internal"
    ref.verify()
    jit.optimize(ref, machine)
    return FunctionObject(machine.emit_object(ref), low.lowered.spec, low.lowered.memory)


def data_object(blobs: dict[str, bytes], machine: binding.TargetMachine) -> bytes:
    """Relocatable object code defining each `symbol -> bytes` of `blobs` as read-only,
    64-byte aligned data with hidden visibility."""
    module = ir.Module(name="pullback_data")
    module.triple = machine.triple
    byte = ir.IntType(8)
    for symbol, data in blobs.items():
        kind = ir.ArrayType(byte, len(data))
        blob = ir.GlobalVariable(module, kind, symbol)
        blob.initializer = ir.Constant(kind, bytearray(data))
        blob.global_constant = True
        blob.align = 64
        blob.visibility = "hidden"
    ref = binding.parse_assembly(str(module))
    ref.data_layout = str(machine.target_data)
    return machine.emit_object(ref)
