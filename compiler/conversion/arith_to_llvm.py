"""arith → llvm dialect: one rule per arith op, mostly one-to-one.

Index values are treated as i64 (the driver retypes them afterwards). Float ops keep
their fastmath flags. Ops LLVM spells as intrinsics (`smax`, `maximum`, saturating
`fptosi`) become `llvm.call_intrinsic`.
"""

from __future__ import annotations

from xdsl.dialects import arith, llvm
from xdsl.dialects.builtin import FloatAttr, IndexType, IntegerAttr, i1, i64
from xdsl.dialects.utils.fast_math import FastMathFlag
from xdsl.ir import Attribute, Operation, SSAValue

from pullback.compiler.conversion.llvm_lowering import LLVMLoweringContext, Rule, llvm_type

_INT_BINARY: dict[type[Operation], type[llvm.ArithmeticBinOperation]] = {
    arith.AddiOp: llvm.AddOp,
    arith.SubiOp: llvm.SubOp,
    arith.MuliOp: llvm.MulOp,
    arith.DivUIOp: llvm.UDivOp,
    arith.DivSIOp: llvm.SDivOp,
    arith.RemUIOp: llvm.URemOp,
    arith.RemSIOp: llvm.SRemOp,
    arith.AndIOp: llvm.AndOp,
    arith.OrIOp: llvm.OrOp,
    arith.XOrIOp: llvm.XOrOp,
}
_FLOAT_BINARY: dict[type[Operation], type[llvm.AbstractFloatArithOp]] = {
    arith.AddfOp: llvm.FAddOp,
    arith.SubfOp: llvm.FSubOp,
    arith.MulfOp: llvm.FMulOp,
    arith.DivfOp: llvm.FDivOp,
}
_INTRINSIC_BINARY: dict[type[Operation], str] = {
    arith.MaxSIOp: "llvm.smax",
    arith.MinSIOp: "llvm.smin",
    arith.MaximumfOp: "llvm.maximum",
    arith.MinimumfOp: "llvm.minimum",
    arith.MaxnumfOp: "llvm.maxnum",
    arith.MinnumfOp: "llvm.minnum",
}
_CASTS: dict[type[Operation], type[Operation]] = {
    arith.ExtFOp: llvm.FPExtOp,
    arith.TruncFOp: llvm.FPTruncOp,
    arith.SIToFPOp: llvm.SIToFPOp,
    arith.ExtUIOp: llvm.ZExtOp,
    arith.ExtSIOp: llvm.SExtOp,
    arith.TruncIOp: llvm.TruncOp,
    arith.BitcastOp: llvm.BitcastOp,
}


def type_suffix(t: Attribute) -> str:
    """The overload suffix of an intrinsic for scalar type `t` (`f64`, `i64`)."""
    return str(llvm_type(t))


def fastmath_of(op: Operation) -> llvm.FastMathAttr:
    """The llvm fastmath attribute carrying the flags of arith op `op`."""
    flags = op.fastmath.data  # type: ignore[attr-defined]
    return llvm.FastMathAttr([FastMathFlag(f) for f in flags])


def _one(op: Operation) -> tuple[list[Operation], list[SSAValue]]:
    return [op], list(op.results)


def _int_binary(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    return _one(_INT_BINARY[type(op)](op.operands[0], op.operands[1]))


def _float_binary(op: Operation,
                  ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    flags = fastmath_of(op)
    return _one(_FLOAT_BINARY[type(op)](op.operands[0], op.operands[1], flags))


def _intrinsic_binary(op: Operation,
                      ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    t = op.results[0].type
    name = f"{_INTRINSIC_BINARY[type(op)]}.{type_suffix(t)}"
    return _one(llvm.CallIntrinsicOp(name, list(op.operands), [llvm_type(t)]))


def _constant(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    assert isinstance(op, arith.ConstantOp)
    value, t = op.value, op.result.type
    if isinstance(t, IndexType):
        assert isinstance(value, IntegerAttr)
        value = IntegerAttr(value.value.data, i64)
    elif t == i1:
        assert isinstance(value, IntegerAttr)
        value = IntegerAttr(1 if value.value.data else 0, i1)
    if not isinstance(value, IntegerAttr | FloatAttr):
        raise NotImplementedError(f"arith.constant {value} has no llvm lowering")
    return _one(llvm.ConstantOp(value, llvm_type(t)))


def _negf(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    assert isinstance(op, arith.NegfOp)
    return _one(llvm.FNegOp(op.operand, fastmath_of(op)))


def _cmpi(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    assert isinstance(op, arith.CmpiOp)
    pred = IntegerAttr(op.predicate.value.data, i64)  # same numbering in both dialects
    return _one(llvm.ICmpOp(op.lhs, op.rhs, pred))


def _cmpf(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    assert isinstance(op, arith.CmpfOp)
    return _one(llvm.FCmpOp(op.lhs, op.rhs, IntegerAttr(op.predicate.value.data, i64)))


def _select(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    assert isinstance(op, arith.SelectOp)
    return _one(llvm.SelectOp(op.cond, op.lhs, op.rhs))


def _cast(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    cls = _CASTS[type(op)]
    return _one(cls(op.operands[0], llvm_type(op.results[0].type)))  # type: ignore[call-arg]


def _fptosi(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    src, dst = op.operands[0].type, op.results[0].type
    name = f"llvm.fptosi.sat.{type_suffix(dst)}.{type_suffix(src)}"
    return _one(llvm.CallIntrinsicOp(name, [op.operands[0]], [dst]))


def _index_cast(op: Operation,
                ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    # index and i64 are one type after lowering.
    if llvm_type(op.operands[0].type) != llvm_type(op.results[0].type):
        raise NotImplementedError(f"arith.index_cast from {op.operands[0].type} is not i64")
    return [], [op.operands[0]]


ARITH_TO_LLVM: dict[type[Operation], Rule] = {
    **{cls: _int_binary for cls in _INT_BINARY},
    **{cls: _float_binary for cls in _FLOAT_BINARY},
    **{cls: _intrinsic_binary for cls in _INTRINSIC_BINARY},
    **{cls: _cast for cls in _CASTS},
    arith.ConstantOp: _constant,
    arith.NegfOp: _negf,
    arith.CmpiOp: _cmpi,
    arith.CmpfOp: _cmpf,
    arith.SelectOp: _select,
    arith.FPToSIOp: _fptosi,
    arith.IndexCastOp: _index_cast,
}
