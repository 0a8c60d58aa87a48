"""`compile_function`: array-level module → native code for the host CPU."""

from __future__ import annotations

import time

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, f32, f64

from pullback.compiler.backends.kernel_level import debug, lap, lower_to_kernels
from pullback.compiler.backends.llvm import blas, jit
from pullback.compiler.backends.llvm.executable import LLVMExecutable
from pullback.compiler.backends.llvm.host_calls import bind_host_call_symbol
from pullback.compiler.backends.llvm.packed_entry import add_packed_entry
from pullback.compiler.context import make_context
from pullback.compiler.conversion.array_to_loops import HOST_CALL_PREFIX, matmul_symbol
from pullback.compiler.conversion.loops_to_llvm import ConvertLoopsToLLVMPass
from pullback.compiler.transforms.expand_math import ExpandMathPass
from pullback.compiler.transforms.host_call_status import (
    HostCallStatusPass,
    written_before_host_calls,
)


def compile_function(module: ModuleOp, name: str, *, keep_ir: bool = False) -> LLVMExecutable:
    """Compile function `@name` of an array-level module to an `LLVMExecutable`.

    The caller's module is not changed. With `keep_ir`, `stages` holds the MLIR text
    after each lowering; `PULLBACK_DEBUG=1` verifies the IR after each stage.
    """
    lowered = lower_to_kernels(module, name, keep_ir)
    mod, timings = lowered.module, lowered.timings
    symbols = {op.sym_name.data for op in mod.body.block.ops if isinstance(op, func.FuncOp)}
    matmuls = [str(e) for e in (f64, f32) if matmul_symbol(e) in symbols]
    for symbol in symbols:
        if symbol.startswith(HOST_CALL_PREFIX):
            bind_host_call_symbol(symbol)
    start = time.perf_counter()
    ctx = make_context()
    ExpandMathPass().apply(ctx, mod)  # vectorizable exp/tanh/log instead of libm calls
    undo_inputs = written_before_host_calls(mod, lowered.name)
    HostCallStatusPass().apply(ctx, mod)  # return at the first failed host call
    ConvertLoopsToLLVMPass().apply(ctx, mod)
    lowered.stage("convert-loops-to-llvm", keep_ir)
    timings["lower-to-llvm"], start = lap(start)
    tm = jit.host_target_machine()
    ll = jit.translate(mod)
    for element in matmuls:
        blas.define_matmul(ll, element)
    add_packed_entry(ll, lowered.spec.name)  # one argument, however many buffers
    ref = jit.parse(ll, tm)
    if debug():
        ref.verify()
    timings["translate"], start = lap(start)
    jit.optimize(ref, tm)
    llvm_ir = str(ref)
    timings["optimize"], start = lap(start)
    engine = jit.jit(ref, tm)
    timings["jit"], start = lap(start)
    return LLVMExecutable(lowered.spec, lowered.input_types, lowered.output_types,
                          lowered.memory, engine, llvm_ir, lowered.stages, timings,
                          host_calls=any(s.startswith(HOST_CALL_PREFIX) for s in symbols),
                          undo_inputs=undo_inputs)
