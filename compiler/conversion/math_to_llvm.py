"""math → llvm dialect: LLVM intrinsics where they exist, libm calls otherwise.

`math.tanh %x : f64` becomes `llvm.call_intrinsic "llvm.tanh.f64"(%x)`; `math.log1p`
and `math.expm1` have no intrinsic and call libm (`log1p`, `log1pf`, ...), declared
as external functions. Integer `math.absi` becomes a compare and select.
"""

from __future__ import annotations

from xdsl.dialects import llvm, math
from xdsl.dialects.builtin import IntegerAttr, f32, i64
from xdsl.ir import Operation, SSAValue

from pullback.compiler.conversion.arith_to_llvm import type_suffix
from pullback.compiler.conversion.llvm_lowering import LLVMLoweringContext, Rule

_INTRINSICS: dict[type[Operation], str] = {
    math.AbsFOp: "llvm.fabs",
    math.ExpOp: "llvm.exp",
    math.LogOp: "llvm.log",
    math.SqrtOp: "llvm.sqrt",
    math.SinOp: "llvm.sin",
    math.CosOp: "llvm.cos",
    math.TanOp: "llvm.tan",
    math.TanhOp: "llvm.tanh",
    math.SinhOp: "llvm.sinh",
    math.CoshOp: "llvm.cosh",
    math.AsinOp: "llvm.asin",
    math.AcosOp: "llvm.acos",
    math.AtanOp: "llvm.atan",
    math.PowFOp: "llvm.pow",
    math.Atan2Op: "llvm.atan2",
    math.FloorOp: "llvm.floor",
    math.CeilOp: "llvm.ceil",
}
_LIBM: dict[type[Operation], str] = {
    math.Log1pOp: "log1p",
    math.ExpM1Op: "expm1",
}


def _intrinsic(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    t = op.results[0].type
    call = llvm.CallIntrinsicOp(f"{_INTRINSICS[type(op)]}.{type_suffix(t)}",
                                list(op.operands), [t])
    return [call], list(call.results)


def _libm(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    t = op.results[0].type
    name = _LIBM[type(op)] + ("f" if t == f32 else "")
    ctx.declare(name, [t], t)
    call = llvm.CallOp(name, *op.operands, return_type=t)
    return [call], list(call.results)


def _absi(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    x = op.operands[0]
    zero = llvm.ConstantOp(IntegerAttr(0, x.type), x.type)  # type: ignore[arg-type]
    neg = llvm.SubOp(zero.result, x)
    is_neg = llvm.ICmpOp(x, zero.result, IntegerAttr(2, i64))  # slt
    sel = llvm.SelectOp(is_neg, neg, x)
    return [zero, neg, is_neg, sel], list(sel.results)


MATH_TO_LLVM: dict[type[Operation], Rule] = {
    **{cls: _intrinsic for cls in _INTRINSICS},
    **{cls: _libm for cls in _LIBM},
    math.AbsIOp: _absi,
}
