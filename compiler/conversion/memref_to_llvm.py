"""memref → llvm dialect for statically shaped, identity-layout buffers.

A memref value becomes a bare `!llvm.ptr` to its first element. `memref.load` and
`memref.store` become an inbounds `llvm.getelementptr` over the element type (not
integer pointer arithmetic, which would stop LLVM from vectorizing) plus the access;
multi-dimensional indices are linearized with the static row-major strides.
`memref.cast` is the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects import llvm, memref
from xdsl.dialects.builtin import DYNAMIC_INDEX, IntegerAttr, MemRefType, NoneAttr, i64
from xdsl.ir import Operation, SSAValue

from pullback.compiler.conversion.llvm_lowering import LLVMLoweringContext, Rule


def _element_pointer(ref: SSAValue, indices: Sequence[SSAValue]
                     ) -> tuple[list[Operation], SSAValue]:
    t = ref.type
    assert isinstance(t, MemRefType)
    if not isinstance(t.layout, NoneAttr):
        raise NotImplementedError(f"memref layout {t.layout} has no llvm lowering")
    shape = t.get_shape()
    if len(indices) > 1 and DYNAMIC_INDEX in shape[1:]:
        raise NotImplementedError(f"memref {t} with dynamic inner dimensions")
    ops: list[Operation] = []
    offset: SSAValue | None = None
    stride = 1
    for i, d in reversed(list(zip(indices, shape, strict=True))):
        term = i
        if stride != 1:
            c = llvm.ConstantOp(IntegerAttr(stride, i64), i64)
            mul = llvm.MulOp(i, c.result)
            ops += [c, mul]
            term = mul.res
        if offset is None:
            offset = term
        else:
            add = llvm.AddOp(offset, term)
            ops.append(add)
            offset = add.res
        stride *= d
    if offset is None:
        return ops, ref
    gep = llvm.GEPOp(ref, [llvm.GEP_USE_SSA_VAL], t.element_type, ssa_indices=[offset],
                     inbounds=True)
    return [*ops, gep], gep.result


def _load(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    assert isinstance(op, memref.LoadOp)
    ops, ptr = _element_pointer(op.memref, op.indices)
    load = llvm.LoadOp(ptr, op.res.type)
    return [*ops, load], [load.dereferenced_value]


def _store(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    assert isinstance(op, memref.StoreOp)
    ops, ptr = _element_pointer(op.memref, op.indices)
    return [*ops, llvm.StoreOp(op.value, ptr)], []


def _cast(op: Operation, ctx: LLVMLoweringContext) -> tuple[list[Operation], list[SSAValue]]:
    return [], [op.operands[0]]


MEMREF_TO_LLVM: dict[type[Operation], Rule] = {
    memref.LoadOp: _load,
    memref.StoreOp: _store,
    memref.CastOp: _cast,
}
