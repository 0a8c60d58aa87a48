"""`compile_function`: array-level module → native code for the host CPU."""

from __future__ import annotations

import os
import time

from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, TensorType, f32, f64

from pullback.compiler.backends.llvm import blas, jit
from pullback.compiler.backends.llvm.executable import LLVMExecutable, numpy_dtype
from pullback.compiler.context import make_context
from pullback.compiler.conversion.array_to_loops import ConvertArrayToLoopsPass, matmul_symbol
from pullback.compiler.conversion.loops_to_llvm import ConvertLoopsToLLVMPass
from pullback.compiler.transforms.expand_math import ExpandMathPass


def _debug() -> bool:
    return os.environ.get("PULLBACK_DEBUG", "") not in ("", "0")


def _find(module: ModuleOp, name: str) -> func.FuncOp:
    funcs = [op for op in module.body.block.ops if isinstance(op, func.FuncOp)]
    for f in funcs:
        if f.sym_name.data == name:
            return f
    names = ", ".join(f.sym_name.data for f in funcs) or "none"
    raise KeyError(f"no function @{name} in the module (functions: {names})")


def compile_function(module: ModuleOp, name: str, *, keep_ir: bool = False) -> LLVMExecutable:
    """Compile function `@name` of an array-level module to an `LLVMExecutable`.

    The caller's module is not changed. With `keep_ir`, `stages` holds the MLIR text
    after each lowering; `PULLBACK_DEBUG=1` verifies the IR after each stage.
    """
    timings: dict[str, float] = {}
    stages: dict[str, str] = {}
    source = _find(module, name)
    in_types = list(source.function_type.inputs)
    out_types = list(source.function_type.outputs)
    for t in (*in_types, *out_types):
        if not isinstance(t, TensorType):
            raise TypeError(f"@{name} must take and return tensors, got {t}")
        numpy_dtype(t.element_type)
    ctx = make_context()
    start = time.perf_counter()
    mod = module.clone()
    ConvertArrayToLoopsPass(function=name).apply(ctx, mod)
    host = _find(mod, name)
    temp_bytes = host.attributes["pullback.temp_bytes"]
    assert isinstance(temp_bytes, DenseArrayBase)
    symbols = {op.sym_name.data for op in mod.body.block.ops if isinstance(op, func.FuncOp)}
    matmuls = [str(e) for e in (f64, f32) if matmul_symbol(e) in symbols]
    _stage(mod, "convert-array-to-loops", keep_ir, stages)
    timings["lower-to-loops"], start = _lap(start)
    ExpandMathPass().apply(ctx, mod)  # vectorizable exp/tanh/log instead of libm calls
    ConvertLoopsToLLVMPass().apply(ctx, mod)
    _stage(mod, "convert-loops-to-llvm", keep_ir, stages)
    timings["lower-to-llvm"], start = _lap(start)
    tm = jit.host_target_machine()
    ll = jit.translate(mod)
    for element in matmuls:
        blas.define_matmul(ll, element)
    ref = jit.parse(ll, tm)
    if _debug():
        ref.verify()
    timings["translate"], start = _lap(start)
    jit.optimize(ref, tm)
    llvm_ir = str(ref)
    timings["optimize"], start = _lap(start)
    engine = jit.jit(ref, tm)
    timings["jit"], start = _lap(start)
    return LLVMExecutable(name, in_types, out_types, [int(v) for v in temp_bytes.get_values()],
                          engine, llvm_ir, stages, timings)


def _stage(mod: ModuleOp, label: str, keep_ir: bool, stages: dict[str, str]) -> None:
    if _debug():
        mod.verify()
    if keep_ir:
        stages[label] = str(mod)


def _lap(start: float) -> tuple[float, float]:
    now = time.perf_counter()
    return now - start, now
