"""`convert-loops-to-llvm`: kernel-level IR to xDSL's llvm dialect.

Input invariant: the output of `convert-kernels-to-loops` (or any module of `func`
functions over statically shaped identity-layout memrefs, using `scf`, `cf`,
`memref` loads/stores/casts, `arith` and `math`).

Output IR: only `llvm.func` ops with `llvm` dialect bodies, ready for
`xdsl.backend.llvm.convert_module`. Steps: any `scf.parallel` left → `scf.for`
(`convert-parallel-to-for`, which the CPU pipeline runs just before), `scf` → `cf`
(xDSL's pass), then one walk
applying the rule tables of `arith_to_llvm`, `math_to_llvm`, `memref_to_llvm`,
`cf_to_llvm` and `func_to_llvm`, an in-place retype of index and memref values, and
declarations of the libm functions used. The module's other attributes are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.transforms.convert_scf_to_cf import ConvertScfToCf

from pullback.compiler.conversion.arith_to_llvm import ARITH_TO_LLVM
from pullback.compiler.conversion.cf_to_llvm import CF_TO_LLVM
from pullback.compiler.conversion.func_to_llvm import FUNC_TO_LLVM
from pullback.compiler.conversion.llvm_lowering import (
    LLVMLoweringContext,
    apply_tables,
    declare_externals,
    retype_values,
)
from pullback.compiler.conversion.math_to_llvm import MATH_TO_LLVM
from pullback.compiler.conversion.memref_to_llvm import MEMREF_TO_LLVM
from pullback.compiler.conversion.parallel_to_for import ConvertParallelToForPass

LOOPS_TO_LLVM = (ARITH_TO_LLVM, MATH_TO_LLVM, MEMREF_TO_LLVM, CF_TO_LLVM, FUNC_TO_LLVM)


@dataclass(frozen=True)
class ConvertLoopsToLLVMPass(ModulePass):
    """Lower kernel-level IR to the llvm dialect (see the module docstring)."""

    name = "convert-loops-to-llvm"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        ConvertParallelToForPass().apply(ctx, op)
        ConvertScfToCf().apply(ctx, op)
        lowering = LLVMLoweringContext()
        apply_tables(op, LOOPS_TO_LLVM, lowering)
        retype_values(op)
        declare_externals(op, lowering)
