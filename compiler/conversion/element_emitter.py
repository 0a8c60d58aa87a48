"""Emits the scalar value of one element of a fused array expression.

`ElementEmitter.emit(value, index)` walks back from `value` through fusible ops,
mapping the index through shape ops and computing elementwise ops with
`SCALAR_RULES`, until it reaches materialized values, which it loads. Results are
memoized per index within one loop body, so a value used twice at the same element
is computed once.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.dialects import arith
from xdsl.ir import Operation, SSAValue

from pullback.compiler.conversion.element_index import Index, reshaped, to_flat, to_multi
from pullback.compiler.conversion.kernel_writer import KernelWriter
from pullback.compiler.conversion.scalar_ops import SCALAR_RULES
from pullback.compiler.dialects import array as A


class ElementEmitter:
    """Computes elements of array values inside the current loop body of `writer`."""

    def __init__(self, writer: KernelWriter, buffers: dict[SSAValue, SSAValue]):
        self.w = writer
        self.buffers = buffers
        self._memo: dict[tuple[object, ...], SSAValue] = {}

    def reset(self) -> None:
        """Forget memoized elements (call when starting a new loop body)."""
        self._memo.clear()

    def emit(self, value: SSAValue, idx: Index) -> SSAValue:
        """The scalar element of array `value` at `idx` (idx.shape == value's shape)."""
        key = (id(value), *idx.key())
        if key in self._memo:
            return self._memo[key]
        if value in self.buffers:
            result = self.w.load(self.buffers[value], to_flat(self.w, idx),
                                 A.element_type_of(value))
        else:
            op = value.owner
            assert isinstance(op, Operation)
            rule = _INDEX_RULES.get(type(op))
            if rule is not None:
                result = rule(self, op, idx)
            elif type(op) in SCALAR_RULES:
                args = [self.emit(v, idx) for v in op.operands]
                result = SCALAR_RULES[type(op)](self.w, op, args)
            else:
                raise NotImplementedError(f"'{op.name}' cannot be fused into a consumer")
        self._memo[key] = result
        return result


def _full(e: ElementEmitter, op: Operation, idx: Index) -> SSAValue:
    assert isinstance(op, A.FullOp)
    return e.w.constant(op.scalar, A.element_type_of(op.result))


def _splat(e: ElementEmitter, op: Operation, idx: Index) -> SSAValue:
    assert isinstance(op, A.ConstantOp)
    value = op.value.get_values()[0]
    return e.w.constant(value, A.element_type_of(op.result))


def _broadcast(e: ElementEmitter, op: Operation, idx: Index) -> SSAValue:
    assert isinstance(op, A.BroadcastOp)
    src = A.shape_of(op.operand)
    multi = to_multi(e.w, idx)[len(idx.shape) - len(src):]
    mapped = tuple(e.w.index(0) if d == 1 else i for i, d in zip(multi, src, strict=True))
    return e.emit(op.operand, Index(src, multi=mapped))


def _reshape(e: ElementEmitter, op: Operation, idx: Index) -> SSAValue:
    assert isinstance(op, A.ReshapeOp)
    return e.emit(op.operand, reshaped(e.w, idx, A.shape_of(op.operand)))


def _transpose(e: ElementEmitter, op: Operation, idx: Index) -> SSAValue:
    assert isinstance(op, A.TransposeOp)
    multi = to_multi(e.w, idx)
    src: list[SSAValue] = list(multi)
    for i, p in enumerate(op.perm):
        src[p] = multi[i]
    return e.emit(op.operand, Index(A.shape_of(op.operand), multi=tuple(src)))


def _slice(e: ElementEmitter, op: Operation, idx: Index) -> SSAValue:
    assert isinstance(op, A.SliceOp)
    multi = to_multi(e.w, idx)
    src = tuple(e.w.affine(i, st, s) for i, st, s in zip(multi, op.strides, op.starts, strict=True))
    return e.emit(op.operand, Index(A.shape_of(op.operand), multi=src))


def wrapped_index(e: ElementEmitter, raw: SSAValue, n: int) -> SSAValue:
    """An i64 index value as `index`, negative counting from the end, clamped to [0, n)."""
    w = e.w
    i = w.add(arith.IndexCastOp(raw, w.index(0).type))
    neg = w.add(arith.CmpiOp(i, w.index(0), "slt"))
    i = w.add(arith.SelectOp(neg, w.add(arith.AddiOp(i, w.index(n))), i))
    i = w.add(arith.MaxSIOp(i, w.index(0)))
    return w.add(arith.MinSIOp(i, w.index(max(n - 1, 0))))


def take_source_index(e: ElementEmitter, src_shape: tuple[int, ...], indices: SSAValue,
                      axis: int, multi: tuple[SSAValue, ...]) -> Index:
    """The source position read by element `multi` of `take(src, indices, axis)`."""
    ni = len(A.shape_of(indices))
    raw = e.emit(indices, Index(A.shape_of(indices), multi=multi[axis:axis + ni]))
    pos = wrapped_index(e, raw, src_shape[axis])
    return Index(src_shape, multi=(*multi[:axis], pos, *multi[axis + ni:]))


def _take(e: ElementEmitter, op: Operation, idx: Index) -> SSAValue:
    assert isinstance(op, A.TakeOp)
    multi = to_multi(e.w, idx)
    src = take_source_index(e, A.shape_of(op.operand), op.indices, op.axis.value.data, multi)
    return e.emit(op.operand, src)


_INDEX_RULES: dict[type[Operation], Callable[[ElementEmitter, Operation, Index], SSAValue]] = {
    A.FullOp: _full,
    A.ConstantOp: _splat,
    A.BroadcastOp: _broadcast,
    A.ReshapeOp: _reshape,
    A.TransposeOp: _transpose,
    A.SliceOp: _slice,
    A.TakeOp: _take,
}


def needs_multi_index(value: SSAValue, buffers: dict[SSAValue, SSAValue]) -> bool:
    """Whether computing `value` element-wise uses per-dimension indices."""
    stack, seen = [value], set[SSAValue]()
    while stack:
        v = stack.pop()
        if v in seen or v in buffers:
            continue
        seen.add(v)
        op = v.owner
        if isinstance(op, A.BroadcastOp | A.TransposeOp | A.SliceOp | A.TakeOp):
            return True
        if isinstance(op, Operation):
            stack.extend(op.operands)
    return False
