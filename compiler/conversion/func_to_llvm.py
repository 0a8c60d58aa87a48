"""func → llvm dialect: functions over bare pointers, calls and returns.

Memref arguments become `!llvm.ptr` (argument attributes such as `llvm.noalias`
carry over), index arguments i64. Private functions get internal linkage so LLVM may
inline and drop them; declarations stay external.
"""

from __future__ import annotations

from xdsl.dialects import func, llvm
from xdsl.ir import Operation, SSAValue
from xdsl.rewriter import Rewriter

from pullback.compiler.conversion.llvm_lowering import LLVMLoweringContext, Rule, llvm_type


def _function(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    assert isinstance(op, func.FuncOp)
    t = op.function_type
    if len(t.outputs) > 1:
        raise NotImplementedError(f"@{op.sym_name.data} returns several values")
    out = llvm_type(t.outputs.data[0]) if t.outputs.data else llvm.LLVMVoidType()
    ftype = llvm.LLVMFunctionType([llvm_type(x) for x in t.inputs], out)
    private = op.sym_visibility is not None and op.sym_visibility.data == "private"
    linkage = "internal" if private and not op.is_declaration else "external"
    body = Rewriter.move_region_contents_to_new_regions(op.body)
    new = llvm.FuncOp(op.sym_name.data, ftype, linkage=llvm.LinkageAttr(linkage), body=body,
                      other_props={"arg_attrs": op.arg_attrs})
    return [new], []


def _call(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    assert isinstance(op, func.CallOp)
    if len(op.res) > 1:
        raise NotImplementedError(f"call to @{op.callee} returns several values")
    ret = llvm_type(op.res[0].type) if op.res else None
    call = llvm.CallOp(op.callee.string_value(), *op.arguments, return_type=ret)
    return [call], list(call.results)


def _return(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    assert isinstance(op, func.ReturnOp)
    return [llvm.ReturnOp(op.arguments[0] if op.arguments else None)], []


FUNC_TO_LLVM: dict[type[Operation], Rule] = {
    func.FuncOp: _function,
    func.CallOp: _call,
    func.ReturnOp: _return,
}
