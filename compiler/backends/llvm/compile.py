"""`compile_function`: array-level module → native code for the host CPU.

`lower_to_llvm` is the part every CPU consumer shares (the JIT here, exported
libraries in `pullback.compiler.export`): the passes of `llvm_pipeline` (kernel-level
lowering, memory planning, math expansion, host-call statuses, the llvm dialect),
then what is not a pass: translation to llvmlite IR with the matrix products defined
and the packed entry added.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from llvmlite import ir
from xdsl.dialects.builtin import ModuleOp, f32, f64
from xdsl.passes import ModulePass

from pullback.compiler.backends.kernel_level import (
    KernelModule,
    debug,
    kernel_pipeline,
    lap,
    lower_to_kernels,
)
from pullback.compiler.backends.llvm import blas, jit
from pullback.compiler.backends.llvm.executable import LLVMExecutable
from pullback.compiler.backends.llvm.gemm import define_own_matmul
from pullback.compiler.backends.llvm.host_calls import bind_host_call_symbol
from pullback.compiler.backends.llvm.matmul_choice import define_chosen_matmul
from pullback.compiler.backends.llvm.packed_entry import add_packed_entry
from pullback.compiler.dialects.kernel import HOST_CALL_PREFIX, matmul_symbol
from pullback.compiler.pass_runner import PassHooks
from pullback.compiler.transforms.host_call_status import written_before_host_calls

MatmulDefiner = Callable[[ir.Module, str], None]
"""Gives the declared `pullback_matmul_<element>` of a module a body."""

GEMMS: dict[str, MatmulDefiner] = {"auto": define_chosen_matmul, "blas": blas.define_matmul,
                                   "own": define_own_matmul}
"""Matrix products by name: chosen per product by its size (`matmul_choice`), scipy's
BLAS for all, or pullback's own generated code (no calls) for all."""


@dataclasses.dataclass
class LLVMModule:
    """A function lowered to llvmlite IR, with what its callers need to know."""

    ll: ir.Module
    lowered: KernelModule
    host_call_symbols: tuple[str, ...]
    """The `pullback_host_call_<T>` symbols the code calls (Python callbacks)."""
    undo_inputs: tuple[int, ...]


def llvm_pipeline(name: str) -> str:
    """The pipeline text from an array-level module to the llvm dialect for `@name`."""
    return (f"{kernel_pipeline(name)},expand-math,host-call-status,convert-parallel-to-for,"
            "convert-loops-to-llvm")


def lower_to_llvm(module: ModuleOp, name: str, *, keep_ir: bool = False,
                  matmul: MatmulDefiner = define_chosen_matmul, passes: str | None = None,
                  hooks: PassHooks | None = None, taken: Sequence[str] = ()) -> LLVMModule:
    """Lower function `@name` of an array-level module to an llvmlite module holding
    `@name` and its packed entry `@name__packed`; `matmul` defines matrix products.

    `passes` is the pipeline text run (default `llvm_pipeline(name)`); `hooks` and
    `taken` as for `lower_to_kernels`."""
    outer = hooks or PassHooks()
    undo: list[tuple[int, ...]] = [()]

    def before(key: str, p: ModulePass, mod: ModuleOp) -> None:
        if p.name == "host-call-status":  # a failed call returns at once: what it leaves
            undo[0] = written_before_host_calls(mod, name)
        if outer.before is not None:
            outer.before(key, p, mod)

    lowered = lower_to_kernels(module, name, keep_ir, passes=passes or llvm_pipeline(name),
                               hooks=PassHooks(before, outer.after, outer.timings),
                               taken=taken)
    mod, timings = lowered.module, lowered.timings
    matmuls = [str(e) for e in (f64, f32) if matmul_symbol(e) in lowered.symbols]
    start = time.perf_counter()
    ll = jit.translate(mod)
    for element in matmuls:
        matmul(ll, element)
    add_packed_entry(ll, lowered.spec.name)  # one argument, however many buffers
    timings["translate"], _ = lap(start)
    host = tuple(sorted(s for s in lowered.symbols if s.startswith(HOST_CALL_PREFIX)))
    return LLVMModule(ll, lowered, host, undo[0])


def compile_function(module: ModuleOp, name: str, *, keep_ir: bool = False,
                     gemm: str = "auto", passes: str | None = None,
                     hooks: PassHooks | None = None,
                     taken: Sequence[str] = ()) -> LLVMExecutable:
    """Compile function `@name` of an array-level module to an `LLVMExecutable`.

    The caller's module is not changed. With `keep_ir`, `stages` holds the MLIR text
    after each pass; `PULLBACK_DEBUG=1` verifies the IR after each pass. `gemm`
    picks the matrix products: "auto" (by size: `matmul_choice`), "blas" (scipy's
    BLAS) or "own" (generated, no calls).
    `passes`, `hooks` and `taken` as for `lower_to_llvm`.
    """
    if gemm not in GEMMS:
        raise ValueError(f"compile_function(gemm={gemm!r}): accepted values are "
                         f"{', '.join(repr(g) for g in GEMMS)}")
    low = lower_to_llvm(module, name, keep_ir=keep_ir, matmul=GEMMS[gemm], passes=passes,
                        hooks=hooks, taken=taken)
    lowered, timings = low.lowered, low.lowered.timings
    for symbol in low.host_call_symbols:
        bind_host_call_symbol(symbol)
    start = time.perf_counter()
    tm = jit.host_target_machine()
    ref = jit.parse(low.ll, tm)
    if debug():
        ref.verify()
    timings["translate"] += lap(start)[0]
    start = time.perf_counter()
    jit.optimize(ref, tm)
    llvm_ir = str(ref)
    timings["optimize"], start = lap(start)
    obj = jit.emit_object(ref, tm)  # kept for the disk cache (`object_entry`)
    ref.close()
    engine = jit.load_object(obj, tm)
    timings["jit"], start = lap(start)
    return LLVMExecutable(lowered.spec, lowered.input_types, lowered.output_types,
                          lowered.memory, engine, llvm_ir, lowered.stages, timings,
                          host_calls=bool(low.host_call_symbols),
                          undo_inputs=low.undo_inputs, symbols=external_symbols(low.ll),
                          object_code=obj)


def external_symbols(ll: ir.Module) -> tuple[str, ...]:
    """The `pullback_*` functions `ll` calls but does not define (BLAS, host calls)."""
    return tuple(sorted(f.name for f in ll.functions
                        if f.is_declaration and f.name.startswith("pullback_")))
