"""llvmlite plumbing: translate llvm-dialect modules, optimize at O3, JIT with MCJIT."""

from __future__ import annotations

from functools import cache

from llvmlite import binding, ir
from xdsl.backend.llvm.convert import convert_module
from xdsl.dialects import llvm
from xdsl.dialects.builtin import ModuleOp


@cache
def _initialized() -> bool:
    binding.initialize_native_target()
    binding.initialize_native_asmprinter()
    return True


def host_target_machine() -> binding.TargetMachine:
    """A fresh O3 target machine for the host CPU (an engine takes ownership of one)."""
    _initialized()
    target = binding.Target.from_triple(binding.get_process_triple())
    return target.create_target_machine(
        cpu=binding.get_host_cpu_name(),
        features=binding.get_host_cpu_features().flatten(),
        opt=3,
        jit=True,
    )


def translate(module: ModuleOp) -> ir.Module:
    """The llvmlite module of an llvm-dialect module, keeping internal linkage."""
    ll = convert_module(module, fallback_target_triple=binding.get_process_triple())
    for op in module.body.block.ops:
        if isinstance(op, llvm.FuncOp) and op.linkage.linkage.data == "internal":
            fn = ll.get_global(op.sym_name.data)
            if not fn.is_declaration:
                fn.linkage = "internal"
    return ll


def parse(ll: ir.Module, tm: binding.TargetMachine) -> binding.ModuleRef:
    """Parse llvmlite IR into an LLVM module for `tm`."""
    ref = binding.parse_assembly(str(ll))
    ref.triple = tm.triple
    ref.data_layout = str(tm.target_data)
    return ref


def optimize(ref: binding.ModuleRef, tm: binding.TargetMachine) -> None:
    """Run LLVM's O3 pipeline with loop and SLP vectorization, in place."""
    tuning = binding.PipelineTuningOptions(speed_level=3)
    tuning.loop_vectorization = True
    tuning.slp_vectorization = True
    builder = binding.create_pass_builder(tm, tuning)
    builder.getModulePassManager().run(ref, builder)


def jit(ref: binding.ModuleRef, tm: binding.TargetMachine) -> binding.ExecutionEngine:
    """Compile `ref` to machine code; keep the returned engine alive while calling it."""
    engine = binding.create_mcjit_compiler(ref, tm)
    engine.finalize_object()
    return engine
