"""Emits the scalar value of one element of a fused array expression.

`ElementEmitter.emit(value, index)` walks back from `value` through fusible ops,
mapping the index through shape ops and computing elementwise ops with their scalar
rules (`scalar_ops.scalar_rule`), until it reaches materialized values, which it
loads. Results are memoized per index within one loop body, so a value used twice
at the same element is computed once. The walk keeps its own stack of pending ops
(each rule is a generator that yields the elements it needs), so an expression of any
depth, such as a sum of thousands of terms written as a Python loop, uses no Python
recursion.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeVar

from xdsl.dialects import arith
from xdsl.dialects.builtin import LocationAttr, UnknownLoc
from xdsl.ir import Operation, SSAValue

from pullback.compiler.conversion.element_index import Index, reshaped, to_flat, to_multi
from pullback.compiler.conversion.kernel_writer import KernelWriter
from pullback.compiler.conversion.scalar_ops import scalar_rule
from pullback.compiler.diagnostics import located
from pullback.compiler.dialects import array as A

Request = tuple[SSAValue, Index]
"""An element some rule needs: the value and the index to compute it at."""
Steps = Generator[Request, SSAValue, SSAValue]
"""A rule in progress: yields the elements it needs, is sent each one, returns its own."""
_T = TypeVar("_T")


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
        """The scalar element of array `value` at `idx` (idx.shape == value's shape).

        Every op emitted carries the location of the array op it computes part of (a
        load that of the op reading the element), so kernel-level IR and its lowering
        errors name the user's line."""
        location = _location_of(value)
        ready = self._located(location, self._known, value, idx)
        if ready is not None:
            return ready
        pending = [(self._compute(value, idx), location)]
        sent: SSAValue | None = None
        while True:
            steps, location = pending[-1]
            try:
                value, idx = self._located(location, steps.send, sent)
            except StopIteration as done:
                pending.pop()
                if not pending:
                    return done.value
                sent = done.value
                continue
            sent = self._located(location, self._known, value, idx)
            if sent is None:
                pending.append((self._compute(value, idx), _location_of(value)))

    def _located(self, location: LocationAttr | None, step: Callable[..., _T],
                 *args: object) -> _T:
        """`step(*args)`, giving the ops it appends to the current block `location` (those
        with none of their own); also when it raises, as a finished rule does."""
        block = self.w.block
        last = block.last_op
        try:
            return step(*args)
        finally:
            if location is not None and not isinstance(location, UnknownLoc):
                new = block.first_op if last is None else last.next_op
                while new is not None:
                    if isinstance(new.location, UnknownLoc):
                        new.location = location
                    new = new.next_op

    def _known(self, value: SSAValue, idx: Index) -> SSAValue | None:
        """The element if it is memoized or stored (then loaded), else None."""
        key = (id(value), *idx.key())
        if key in self._memo:
            return self._memo[key]
        if value in self.buffers:
            loaded = self.w.load(self.buffers[value], to_flat(self.w, idx),
                                 A.element_type_of(value))
            self._memo[key] = loaded
            return loaded
        return None

    def _compute(self, value: SSAValue, idx: Index) -> Steps:
        op = value.owner
        assert isinstance(op, Operation)
        rule = _INDEX_RULES.get(type(op))
        scalar = None if rule is not None else scalar_rule(type(op))
        if rule is not None:
            result = yield from rule(self, op, idx)
        elif scalar is not None:
            args: list[SSAValue] = []
            for v in op.operands:
                args.append((yield v, idx))
            result = scalar(self.w, op, args)
        else:
            raise NotImplementedError(located(op, f"'{op.name}' cannot be fused into a consumer"))
        self._memo[(id(value), *idx.key())] = result
        return result


def _location_of(value: SSAValue) -> LocationAttr | None:
    """The location of the op that computes `value`; None for a block argument."""
    owner = value.owner
    return owner.location if isinstance(owner, Operation) else None


def _full(e: ElementEmitter, op: Operation, idx: Index) -> Steps:
    assert isinstance(op, A.FullOp)
    return e.w.constant(op.scalar, A.element_type_of(op.result))
    yield  # a rule that needs no element


def _splat(e: ElementEmitter, op: Operation, idx: Index) -> Steps:
    assert isinstance(op, A.ConstantOp)
    value = op.value.get_values()[0]
    return e.w.constant(value, A.element_type_of(op.result))
    yield  # a rule that needs no element


def _broadcast(e: ElementEmitter, op: Operation, idx: Index) -> Steps:
    assert isinstance(op, A.BroadcastOp)
    src = A.shape_of(op.operand)
    multi = to_multi(e.w, idx)[len(idx.shape) - len(src):]
    mapped = tuple(e.w.index(0) if d == 1 else i for i, d in zip(multi, src, strict=True))
    return (yield op.operand, Index(src, multi=mapped))


def _reshape(e: ElementEmitter, op: Operation, idx: Index) -> Steps:
    assert isinstance(op, A.ReshapeOp)
    return (yield op.operand, reshaped(e.w, idx, A.shape_of(op.operand)))


def _transpose(e: ElementEmitter, op: Operation, idx: Index) -> Steps:
    assert isinstance(op, A.TransposeOp)
    multi = to_multi(e.w, idx)
    src: list[SSAValue] = list(multi)
    for i, p in enumerate(op.perm):
        src[p] = multi[i]
    return (yield op.operand, Index(A.shape_of(op.operand), multi=tuple(src)))


def _slice(e: ElementEmitter, op: Operation, idx: Index) -> Steps:
    assert isinstance(op, A.SliceOp)
    multi = to_multi(e.w, idx)
    src = tuple(e.w.affine(i, st, s) for i, st, s in zip(multi, op.strides, op.starts, strict=True))
    return (yield op.operand, Index(A.shape_of(op.operand), multi=src))


def wrapped_index(e: ElementEmitter, raw: SSAValue, n: int) -> SSAValue:
    """An i64 index value as `index`, negative counting from the end, clamped to [0, n)."""
    w = e.w
    i = w.add(arith.IndexCastOp(raw, w.index(0).type))
    neg = w.add(arith.CmpiOp(i, w.index(0), "slt"))
    i = w.add(arith.SelectOp(neg, w.add(arith.AddiOp(i, w.index(n))), i))
    i = w.add(arith.MaxSIOp(i, w.index(0)))
    return w.add(arith.MinSIOp(i, w.index(max(n - 1, 0))))


def _take(e: ElementEmitter, op: Operation, idx: Index) -> Steps:
    """The source position read by this element of `take(src, indices, axis)`, then
    the source element there."""
    assert isinstance(op, A.TakeOp)
    multi = to_multi(e.w, idx)
    axis, src_shape = op.axis.value.data, A.shape_of(op.operand)
    ni = len(A.shape_of(op.indices))
    raw = yield op.indices, Index(A.shape_of(op.indices), multi=multi[axis:axis + ni])
    pos = wrapped_index(e, raw, src_shape[axis])
    return (yield op.operand, Index(src_shape, multi=(*multi[:axis], pos, *multi[axis + ni:])))


_INDEX_RULES: dict[type[Operation], Callable[[ElementEmitter, Operation, Index], Steps]] = {
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
