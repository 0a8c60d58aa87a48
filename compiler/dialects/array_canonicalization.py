"""The rewrite patterns of `array` ops, attached to the ops as canonicalization patterns.

Each pattern names the op classes it rewrites (`roots`); those ops carry the
`ArrayCanonicalization` trait, through which xDSL's `canonicalize` and pullback's
`simplify` find them (`patterns_for`). Patterns are tried in the order of `PATTERNS`.

Rewrites are exact for every input, NaN and inf included, with one deliberate
exception: a structural zero made by the AD passes (an `array.full` carrying
`pullback.zero`) absorbs products, quotients and linear ops, as a symbolic zero
derivative does, even where the other factor is inf or NaN. Zeros written by the
user are never used that way (`x * 0` stays, since inf * 0 is NaN).
`x + 0 -> x` is applied to every zero (it differs only in the sign of a zero).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects.builtin import (
    AnyFloat,
    Float32Type,
    Float64Type,
    IntegerType,
    TensorType,
    UnitAttr,
)
from xdsl.ir import Operation, SSAValue
from xdsl.pattern_rewriter import PatternRewriter, RewritePattern

from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.array import ZERO_MARK, is_marked_zero
from pullback.compiler.dialects.traits import IndexMap, has


class ArrayPattern(RewritePattern):
    """A rewrite pattern of the op classes in `roots`."""

    roots: ClassVar[tuple[type[Operation], ...]] = ()


def _replace(rewriter: PatternRewriter, op: Operation,
             new: Operation | Sequence[Operation]) -> None:
    """Replace `op` by the ops `new` (the last one's results), which take its location:
    what a rewrite makes stands for the user's code the op came from."""
    for created in (new,) if isinstance(new, Operation) else new:
        created.location = op.location
    rewriter.replace(op, new)


def _full(value: SSAValue) -> A.FullOp | None:
    op = value.owner
    return op if isinstance(op, A.FullOp) else None


def _is_full_of(value: SSAValue, scalar: float) -> bool:
    op = _full(value)
    return op is not None and op.scalar == scalar


def _new_full(scalar: float | int | bool, t: TensorType, marked: bool) -> A.FullOp:
    op = A.FullOp(scalar, t)
    if marked:
        op.attributes[ZERO_MARK] = UnitAttr()
    return op


def _zeros_of(value: SSAValue) -> A.FullOp:
    t = value.type
    assert isinstance(t, TensorType)
    return _new_full(0, t, marked=True)


class SimplifyArithmetic(ArrayPattern):
    """x+0, 0+x, x-0, 0-x, x*1, x/1, and products/quotients with AD zeros."""

    roots = (A.AddOp, A.SubOp, A.MulOp, A.DivOp)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if not isinstance(op, A.AddOp | A.SubOp | A.MulOp | A.DivOp):
            return
        x, y = op.lhs, op.rhs
        if not isinstance(A.element_type_of(x), AnyFloat):
            return
        if isinstance(op, A.AddOp | A.SubOp) and _is_full_of(y, 0):
            rewriter.replace(op, [], [x])
        elif isinstance(op, A.AddOp) and _is_full_of(x, 0):
            rewriter.replace(op, [], [y])
        elif isinstance(op, A.SubOp) and _is_full_of(x, 0):
            _replace(rewriter, op, A.NegOp(y))
        elif isinstance(op, A.MulOp | A.DivOp) and _is_full_of(y, 1):
            rewriter.replace(op, [], [x])
        elif isinstance(op, A.MulOp) and _is_full_of(x, 1):
            rewriter.replace(op, [], [y])
        elif is_marked_zero(x) or (isinstance(op, A.MulOp) and is_marked_zero(y)):
            _replace(rewriter, op, _zeros_of(op.result))


class SimplifyNeg(ArrayPattern):
    """neg(neg(x)) -> x; neg(full v) -> full -v."""

    roots = (A.NegOp,)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if not isinstance(op, A.NegOp):
            return
        inner = op.operand.owner
        if isinstance(inner, A.NegOp):
            rewriter.replace(op, [], [inner.operand])
        elif isinstance(inner, A.FullOp) and isinstance(A.element_type_of(op.result), AnyFloat):
            t = op.result.type
            assert isinstance(t, TensorType)
            _replace(rewriter, op, _new_full(-inner.scalar, t, ZERO_MARK in inner.attributes))


_MOVES_ELEMENTS = tuple(op for op in A.Array.operations if has(op, IndexMap))
_LINEAR = (A.CumsumOp, A.ReduceSumOp, A.MatmulOp, A.ConcatenateOp)


class FoldFull(ArrayPattern):
    """Ops that only move elements of a full give a full; linear ops of AD zeros give zeros."""

    roots = (*_MOVES_ELEMENTS, *_LINEAR)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if isinstance(op, _MOVES_ELEMENTS):
            src = _full(op.operands[0])
            if src is not None:
                t = op.results[0].type
                assert isinstance(t, TensorType)
                _replace(rewriter, op, _new_full(src.scalar, t, ZERO_MARK in src.attributes))
        elif isinstance(op, _LINEAR):
            zero_in = all if isinstance(op, A.ConcatenateOp) else any
            if zero_in(is_marked_zero(v) for v in op.operands):
                _replace(rewriter, op, _zeros_of(op.results[0]))


class SimplifyUpdates(ArrayPattern):
    """Scatter/update of AD zeros: the base stays; zeros updated by zeros stay zeros."""

    roots = (A.ScatterAddOp, A.UpdateSliceOp)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if isinstance(op, A.ScatterAddOp) and is_marked_zero(op.updates):
            rewriter.replace(op, [], [op.base_])
        elif isinstance(op, A.UpdateSliceOp) and is_marked_zero(op.value):
            if is_marked_zero(op.base_):
                rewriter.replace(op, [], [op.base_])


class ComposeShapes(ArrayPattern):
    """Identity reshape/broadcast/transpose/convert vanish; reshape∘reshape and
    transpose∘transpose become one op."""

    roots = (A.ReshapeOp, A.BroadcastOp, A.ConvertOp, A.TransposeOp)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if isinstance(op, A.ReshapeOp | A.BroadcastOp | A.ConvertOp):
            if op.operand.type == op.result.type:
                rewriter.replace(op, [], [op.operand])
            elif isinstance(op, A.ReshapeOp) and isinstance(op.operand.owner, A.ReshapeOp):
                inner = op.operand.owner.operand
                _replace(rewriter, op, A.ReshapeOp(inner, A.shape_of(op.result)))
        elif isinstance(op, A.TransposeOp):
            perm = op.perm
            if perm == tuple(range(len(perm))):
                rewriter.replace(op, [], [op.operand])
            elif isinstance(op.operand.owner, A.TransposeOp):
                inner = op.operand.owner
                composed = [inner.perm[p] for p in perm]
                _replace(rewriter, op, A.TransposeOp(inner.operand, composed))


class SplatThroughShapes(ArrayPattern):
    """A reshape/transpose/broadcast of a broadcast one-element array is one broadcast."""

    roots = (A.ReshapeOp, A.TransposeOp, A.BroadcastOp)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if not isinstance(op, A.ReshapeOp | A.TransposeOp | A.BroadcastOp):
            return
        inner = op.operand.owner
        if not isinstance(inner, A.BroadcastOp) or math.prod(A.shape_of(inner.operand)) != 1:
            return
        scalar = inner.operand
        new: list[Operation] = []
        if A.shape_of(scalar) != ():
            new.append(A.ReshapeOp(scalar, []))
            scalar = new[-1].results[0]
        new.append(A.BroadcastOp(scalar, A.shape_of(op.results[0])))
        _replace(rewriter, op, new)


def _widens(narrow: object, wide: object) -> bool:
    """Whether converting narrow -> wide element type is exact and reversible."""
    if isinstance(narrow, Float32Type):
        return isinstance(wide, Float64Type)
    if isinstance(narrow, IntegerType) and narrow.width.data == 1:
        return wide != narrow
    return False


class SimplifyConvert(ArrayPattern):
    """convert(full) -> full; convert back after an exact widening -> the original."""

    roots = (A.ConvertOp,)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if not isinstance(op, A.ConvertOp):
            return
        inner = op.operand.owner
        t = op.result.type
        assert isinstance(t, TensorType)
        if isinstance(inner, A.FullOp):
            v = inner.scalar
            if isinstance(t.element_type, AnyFloat):
                _replace(rewriter, op, _new_full(float(v), t, ZERO_MARK in inner.attributes))
            elif math.isfinite(v):
                el = t.element_type
                assert isinstance(el, IntegerType)
                _replace(rewriter, op, A.FullOp(bool(v) if el.width.data == 1 else int(v), t))
        elif isinstance(inner, A.ConvertOp) and inner.operand.type == t:
            if _widens(A.element_type_of(t), A.element_type_of(inner.result)):
                rewriter.replace(op, [], [inner.operand])


class SimplifySelect(ArrayPattern):
    """select(c, x, x) -> x."""

    roots = (A.SelectOp,)

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        if isinstance(op, A.SelectOp) and op.on_true == op.on_false:
            rewriter.replace(op, [], [op.on_true])


PATTERNS: tuple[ArrayPattern, ...] = (
    SimplifyArithmetic(), SimplifyNeg(), FoldFull(), SimplifyUpdates(), ComposeShapes(),
    SplatThroughShapes(), SimplifyConvert(), SimplifySelect(),
)
"""Every pattern, in the order they are tried on an op."""


@functools.cache
def patterns_for(op: type[Operation]) -> tuple[ArrayPattern, ...]:
    """The patterns rewriting ops of class `op`, in `PATTERNS` order."""
    return tuple(p for p in PATTERNS if op in p.roots)
