"""The emitter through which derivative rules build `array` ops.

An `Emitter` appends ops to the end of one block (the derivative function being
built) and returns their results, so a rule reads like the math it encodes:
`e.mul(g, e.cos(x))`. Constants take the element type of the value they combine
with, so every rule works for f32 as well as f64.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from xdsl.dialects.builtin import UNKNOWN_LOC, LocationAttr, TensorType, UnitAttr, UnknownLoc
from xdsl.ir import Attribute, Block, Operation, SSAValue

from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.array import ZERO_MARK


class Emitter:
    """Appends ops to `block` and hands back their results. Inside `at(location)`, the
    ops it makes take `location` (the source line of the primal op being differentiated)."""

    def __init__(self, block: Block):
        self.block = block
        self.location: LocationAttr = UNKNOWN_LOC

    @contextmanager
    def at(self, location: LocationAttr) -> Iterator[None]:
        """Give the ops made inside the `with` the location `location`."""
        outer, self.location = self.location, location
        try:
            yield
        finally:
            self.location = outer

    def emit(self, op: Operation) -> SSAValue:
        """Append `op`; its single result."""
        if isinstance(op.location, UnknownLoc):
            op.location = self.location
        self.block.add_op(op)
        return op.results[0]

    # -- constants ---------------------------------------------------------------

    def full(self, value: float, like: SSAValue | Attribute) -> SSAValue:
        """An array of `like`'s type filled with `value`."""
        t = like.type if isinstance(like, SSAValue) else like
        assert isinstance(t, TensorType)
        return self.emit(A.FullOp(value, t))

    def zeros(self, like: SSAValue | Attribute) -> SSAValue:
        """A structural zero derivative of `like`'s type (marked for simplification)."""
        t = like.type if isinstance(like, SSAValue) else like
        assert isinstance(t, TensorType)
        op = A.FullOp(0, t)
        op.attributes[ZERO_MARK] = UnitAttr()
        return self.emit(op)

    # -- elementwise -------------------------------------------------------------

    def add(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self.emit(A.AddOp(x, y))

    def sub(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self.emit(A.SubOp(x, y))

    def mul(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self.emit(A.MulOp(x, y))

    def div(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self.emit(A.DivOp(x, y))

    def neg(self, x: SSAValue) -> SSAValue:
        return self.emit(A.NegOp(x))

    def unary(self, cls: type[A.UnaryOp], x: SSAValue) -> SSAValue:
        return self.emit(cls(x))

    def compare(self, predicate: str, x: SSAValue, y: SSAValue) -> SSAValue:
        return self.emit(A.CompareOp(predicate, x, y))

    def select(self, cond: SSAValue, x: SSAValue, y: SSAValue) -> SSAValue:
        return self.emit(A.SelectOp(cond, x, y))

    def convert(self, x: SSAValue, element_type: Attribute) -> SSAValue:
        return self.emit(A.ConvertOp(x, element_type))

    def scale(self, x: SSAValue, factor: float) -> SSAValue:
        """`factor * x`."""
        return self.mul(x, self.full(factor, x))

    # -- shapes ------------------------------------------------------------------

    def reshape(self, x: SSAValue, shape: Sequence[int]) -> SSAValue:
        """`x` reshaped; no op when the shape already matches."""
        if A.shape_of(x) == tuple(shape):
            return x
        return self.emit(A.ReshapeOp(x, shape))

    def broadcast(self, x: SSAValue, shape: Sequence[int]) -> SSAValue:
        """`x` broadcast to `shape`; no op when the shape already matches."""
        if A.shape_of(x) == tuple(shape):
            return x
        return self.emit(A.BroadcastOp(x, shape))

    def transpose(self, x: SSAValue, perm: Sequence[int]) -> SSAValue:
        return self.emit(A.TransposeOp(x, perm))

    def reduce_sum(self, x: SSAValue, axes: Sequence[int]) -> SSAValue:
        """Sum over `axes`; no op when there are none."""
        if not axes:
            return x
        return self.emit(A.ReduceSumOp(x, axes))

    def reduce(self, cls: type[A.ReduceOp], x: SSAValue, axes: Sequence[int]) -> SSAValue:
        return self.emit(cls(x, axes))

    def unreduce(self, x: SSAValue, axes: Sequence[int], shape: Sequence[int]) -> SSAValue:
        """Spread a reduction's result `x` over `axes` back to the operand `shape`."""
        keep = [1 if i in axes else d for i, d in enumerate(shape)]
        return self.broadcast(self.reshape(x, keep), shape)

    def matmul(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self.emit(A.MatmulOp(x, y))

    def matrix_transpose(self, x: SSAValue) -> SSAValue:
        """Swap the last two dimensions."""
        rank = len(A.shape_of(x))
        return self.transpose(x, [*range(rank - 2), rank - 1, rank - 2])
