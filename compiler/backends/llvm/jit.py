"""llvmlite plumbing: translate llvm-dialect modules, optimize at O3, JIT with MCJIT.

Machine code is made as an object file (`emit_object`) and loaded into an MCJIT
engine (`load_object`): the same bytes a fresh process loads from the disk cache
(`pullback.compiler.backends.llvm.object_entry`) without lowering or LLVM's passes.
"""

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
    manager = builder.getModulePassManager()
    try:
        manager.run(ref, builder)
    finally:
        _dispose_pass_manager(manager)


def _dispose_pass_manager(manager: binding.ModulePassManager) -> None:
    """Free the native pass pipeline of `manager` now.

    llvmlite's `ModulePassManager` inherits a no-op `_dispose` ahead of the one that
    deletes the native object, so closing it (or letting it be collected) frees
    nothing: every O3 pipeline, some 250 KB of pass objects, would stay allocated
    for the life of the process. Delete it through the C entry point, then detach
    the Python wrapper so nothing can delete it twice.
    """
    if manager.closed:
        return
    binding.ffi.lib.LLVMPY_DisposeNewModulePassManger(manager)
    manager.detach()


def jit(ref: binding.ModuleRef, tm: binding.TargetMachine) -> binding.ExecutionEngine:
    """Compile `ref` to machine code; keep the returned engine alive while calling it.

    The engine takes `tm`; `ref` is freed once compiled (the machine code and its
    symbols stay in the engine), so an engine holds no IR: about 130 KB less for each
    compiled program that stays in memory."""
    obj = emit_object(ref, tm)
    ref.close()
    return load_object(obj, tm)


def emit_object(ref: binding.ModuleRef, tm: binding.TargetMachine) -> bytes:
    """The object file of `ref` (optimized already) for `tm`; `ref` is not changed."""
    return bytes(tm.emit_object(ref))


def load_object(obj: bytes, tm: binding.TargetMachine) -> binding.ExecutionEngine:
    """An engine holding the machine code of object file `obj` (emitted for `tm`),
    relocated and ready to call; it takes `tm`. External symbols (`pullback_*`) must
    be bound (`binding.add_symbol`) before."""
    empty = binding.parse_assembly("")
    empty.triple = tm.triple
    empty.data_layout = str(tm.target_data)
    engine = binding.create_mcjit_compiler(empty, tm)
    engine.add_object_file(binding.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    engine.remove_module(empty)
    empty.close()
    return engine
