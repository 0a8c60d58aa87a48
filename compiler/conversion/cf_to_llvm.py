"""cf → llvm dialect: branches map one-to-one."""

from __future__ import annotations

from xdsl.dialects import cf, llvm
from xdsl.ir import Operation, SSAValue

from pullback.compiler.conversion.llvm_lowering import LLVMLoweringContext, Rule


def _br(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    assert isinstance(op, cf.BranchOp)
    return [llvm.BrOp(op.successor, *op.arguments)], []


def _cond_br(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    assert isinstance(op, cf.ConditionalBranchOp)
    return [llvm.CondBrOp(op.cond, op.then_block, op.then_arguments, op.else_block,
                          op.else_arguments)], []


CF_TO_LLVM: dict[type[Operation], Rule] = {
    cf.BranchOp: _br,
    cf.ConditionalBranchOp: _cond_br,
}
