"""Batching rules of every `array` op, for the `vmap` pass.

A rule gets a `BatchEmitter` (an `Emitter` that knows the batch size B), the
original op, its new operands and which of them are batched (carry a leading
dimension of size B); it returns the op's result with the leading batch dimension.
Rules are asked only when at least one operand is batched; an unbatched operand
is broadcast to the batch where the op needs equal shapes, and left alone where it
can be shared by every batch element (the right operand of a matrix product, the
indices of a gather).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, TensorType, i64
from xdsl.ir import Block, Operation, SSAValue

from pullback.compiler.autodiff.emit import Emitter
from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.ad import (
    CallbackGradOp,
    CallbackOp,
    CheckpointOp,
    EagerUpdateOp,
    HookOp,
    StopGradientOp,
)
from pullback.compiler.dialects.traits import Elementwise, has


class BatchEmitter(Emitter):
    """An `Emitter` for batched code: `size` is the batch size B."""

    def __init__(self, block: Block, size: int):
        super().__init__(block)
        self.size = size

    def lift(self, x: SSAValue, batched: bool) -> SSAValue:
        """`x` with the leading batch dimension (broadcast when it has none)."""
        return x if batched else self.broadcast(x, (self.size, *A.shape_of(x)))

    def batched_type(self, value: SSAValue, shape: Sequence[int] | None = None) -> TensorType:
        """The type of `value` (or of its element type at `shape`) with the batch in front."""
        dims = A.shape_of(value) if shape is None else tuple(shape)
        return TensorType(A.element_type_of(value), [self.size, *dims])

    def arange(self, step: int) -> SSAValue:
        """The i64 vector `[0, step, 2 step, ...]` of length B."""
        t = TensorType(i64, [self.size])
        values = [k * step for k in range(self.size)]
        return self.emit(A.ConstantOp(DenseIntOrFPElementsAttr.from_list(t, values)))


BatchRule = Callable[[BatchEmitter, Operation, Sequence[SSAValue], Sequence[bool]], SSAValue]
BATCH_RULES: dict[type[Operation], BatchRule] = {}


def _rebuild(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
             result: TensorType, **properties: object) -> SSAValue:
    """A copy of `op` on new operands with a new result type and updated properties."""
    props = dict(op.properties)
    for key, value in properties.items():
        props[key] = value  # type: ignore[assignment]
    return e.emit(type(op).create(
        operands=list(operands), result_types=[result], properties=props,
        attributes=dict(op.attributes),
    ))


def _shifted(values: Sequence[int], by: int = 1) -> list[int]:
    return [v + by for v in values]


# ----------------------------------------------------------------------------
# Constants: no operands, so never batched; asked anyway, they broadcast
# ----------------------------------------------------------------------------


def _constant(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
              batched: Sequence[bool]) -> SSAValue:
    return e.lift(e.emit(op.clone()), False)


# ----------------------------------------------------------------------------
# Elementwise ops (and compare, select, convert): broadcast the unbatched operands
# ----------------------------------------------------------------------------


def elementwise_rule(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
                 batched: Sequence[bool]) -> SSAValue:
    lifted = [e.lift(v, b) for v, b in zip(operands, batched, strict=True)]
    return _rebuild(e, op, lifted, e.batched_type(op.results[0]))


# ----------------------------------------------------------------------------
# Shape ops, reductions and scans: every axis moves one place to the right
# ----------------------------------------------------------------------------


def _broadcast(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
               batched: Sequence[bool]) -> SSAValue:
    """Leading ones go after the batch dimension, then the broadcast stretches them."""
    src, dst = A.shape_of(op.operands[0]), A.shape_of(op.results[0])
    ones = [1] * (len(dst) - len(src))
    x = e.reshape(operands[0], (e.size, *ones, *src))
    return e.broadcast(x, (e.size, *dst))


def _reshape(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
             batched: Sequence[bool]) -> SSAValue:
    return e.emit(A.ReshapeOp(operands[0], (e.size, *A.shape_of(op.results[0]))))


def _transpose(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
               batched: Sequence[bool]) -> SSAValue:
    assert isinstance(op, A.TransposeOp)
    return e.transpose(operands[0], [0, *_shifted(op.perm)])


def _reduce(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
            batched: Sequence[bool]) -> SSAValue:
    assert isinstance(op, A.ReduceOp)
    return e.reduce(type(op), operands[0], _shifted(op.axis_list))


def _cumsum(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
            batched: Sequence[bool]) -> SSAValue:
    """A 0-d running sum is the identity; otherwise the axis shifts."""
    assert isinstance(op, A.CumsumOp)
    if A.shape_of(op.operand) == ():
        return operands[0]
    axis = op.axis.value.data + 1
    return e.emit(A.CumsumOp(operands[0], axis, reverse=op.reverse is not None))


def _slice(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
           batched: Sequence[bool]) -> SSAValue:
    assert isinstance(op, A.SliceOp)
    shape = (e.size, *A.shape_of(op.results[0]))
    return e.emit(A.SliceOp(operands[0], [0, *op.starts], [1, *op.strides], shape))


def _update_slice(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
                  batched: Sequence[bool]) -> SSAValue:
    assert isinstance(op, A.UpdateSliceOp)
    base, value = (e.lift(v, b) for v, b in zip(operands, batched, strict=True))
    return e.emit(A.UpdateSliceOp(base, value, [0, *op.starts], [1, *op.strides]))


def _concatenate(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
                 batched: Sequence[bool]) -> SSAValue:
    assert isinstance(op, A.ConcatenateOp)
    lifted = [e.lift(v, b) for v, b in zip(operands, batched, strict=True)]
    return e.emit(A.ConcatenateOp(lifted, op.axis.value.data + 1))


# ----------------------------------------------------------------------------
# Matrix product: fold the batch into M (or N) when one side is a plain matrix
# ----------------------------------------------------------------------------


def _matmul(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
            batched: Sequence[bool]) -> SSAValue:
    """(B, M, K) x (K, N): one (B*M, K) x (K, N) product; (M, K) x (B, K, N): one
    (M, K) x (K, B*N) product; otherwise the batch becomes a batch dimension."""
    assert isinstance(op, A.MatmulOp)
    x, y = operands
    a, b = A.shape_of(op.lhs), A.shape_of(op.rhs)
    big = e.size
    if len(a) == 2 and batched[0] and not batched[1]:
        (m, k), n = a, b[1]
        out = e.matmul(e.reshape(x, (big * m, k)), y)
        return e.reshape(out, (big, m, n))
    if len(a) == 2 and batched[1] and not batched[0]:
        m, (k, n) = a[0], b
        rows = e.reshape(e.transpose(y, [1, 0, 2]), (k, big * n))
        out = e.reshape(e.matmul(x, rows), (m, big, n))
        return e.transpose(out, [1, 0, 2])
    return e.matmul(e.lift(x, batched[0]), e.lift(y, batched[1]))


# ----------------------------------------------------------------------------
# Gather and scatter: shift the axis; batched indices gather from merged rows
# ----------------------------------------------------------------------------


def _rows_first(e: BatchEmitter, x: SSAValue, axis: int) -> tuple[SSAValue, list[int]]:
    """Batched `x` (B, *src) as (B * src[axis], *rest): row b * n + i is x[b, ..., i, ...].

    Returns the rows and the permutation that moved `axis` next to the batch."""
    rank = len(A.shape_of(x))
    perm = [0, axis + 1, *[d for d in range(1, rank) if d != axis + 1]]
    moved = e.transpose(x, perm)
    shape = A.shape_of(moved)
    return e.reshape(moved, (shape[0] * shape[1], *shape[2:])), perm


def _row_indices(e: BatchEmitter, indices: SSAValue, n: int) -> SSAValue:
    """Batched indices into a dimension of size `n` as indices into the merged rows."""
    shape = A.shape_of(indices)
    zero = e.full(0, indices)
    wrapped = e.select(e.compare("lt", indices, zero), e.add(indices, e.full(n, indices)),
                       indices)
    offsets = e.reshape(e.arange(n), (e.size, *[1] * (len(shape) - 1)))
    return e.add(wrapped, e.broadcast(offsets, shape))


def _take(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
          batched: Sequence[bool]) -> SSAValue:
    assert isinstance(op, A.TakeOp)
    axis = op.axis.value.data
    x, idx = operands
    if not batched[1]:
        return e.emit(A.TakeOp(x, idx, axis + 1))
    src = A.shape_of(op.operand)
    rows, _ = _rows_first(e, e.lift(x, batched[0]), axis)
    got = e.emit(A.TakeOp(rows, _row_indices(e, idx, src[axis]), 0))
    # got: (B, *idx, *src[:axis], *src[axis+1:]); move src[:axis] before the indices
    k = len(A.shape_of(op.indices))
    perm = [0, *range(k + 1, k + 1 + axis), *range(1, k + 1),
            *range(k + 1 + axis, len(A.shape_of(got)))]
    return e.transpose(got, perm)


def _scatter_add(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
                 batched: Sequence[bool]) -> SSAValue:
    assert isinstance(op, A.ScatterAddOp)
    axis = op.axis.value.data
    base, idx, updates = operands
    base, updates = e.lift(base, batched[0]), e.lift(updates, batched[2])
    if not batched[1]:
        return e.emit(A.ScatterAddOp(base, idx, updates, axis + 1))
    src = A.shape_of(op.base_)
    rows, perm = _rows_first(e, base, axis)
    # updates: (B, *src[:axis], *idx, *src[axis+1:]) -> (B, *idx, *src[:axis], *src[axis+1:])
    k = len(A.shape_of(op.indices))
    order = [0, *range(axis + 1, axis + 1 + k), *range(1, axis + 1),
             *range(axis + 1 + k, len(A.shape_of(updates)))]
    moved = e.transpose(updates, order)
    out = e.emit(A.ScatterAddOp(rows, _row_indices(e, idx, src[axis]), moved, 0))
    unmerged = e.reshape(out, [A.shape_of(base)[p] for p in perm])
    return e.transpose(unmerged, [perm.index(d) for d in range(len(perm))])


# ----------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------

for _cls in (A.ConstantOp, A.FullOp):
    BATCH_RULES[_cls] = _constant
for _cls in (*(op for op in A.Array.operations if has(op, Elementwise)), StopGradientOp):
    BATCH_RULES[_cls] = elementwise_rule
for _cls in A.REDUCTIONS:
    BATCH_RULES[_cls] = _reduce
BATCH_RULES.update({
    A.BroadcastOp: _broadcast,
    A.ReshapeOp: _reshape,
    A.TransposeOp: _transpose,
    A.CumsumOp: _cumsum,
    A.MatmulOp: _matmul,
    A.SliceOp: _slice,
    A.UpdateSliceOp: _update_slice,
    A.TakeOp: _take,
    A.ScatterAddOp: _scatter_add,
    A.ConcatenateOp: _concatenate,
})


def _no_batched_callbacks(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
                          batched: Sequence[bool]) -> SSAValue:
    kind = getattr(op, "kind", None)
    if kind is not None and kind.data == "eager_update":
        raise NotImplementedError(
            f"'{op.name}' of pb.eager_update ('{op.label.data}') cannot be batched: batched "
            "derivatives (jacobian, hessian) would apply one update per row; use pb.gradient")
    raise NotImplementedError(
        f"'{op.name}' (pb.showgrad / pb.hook) cannot be batched: batched derivatives "
        "(jacobian, hessian) do not support showgrad or hooks on the batched values; "
        "use pb.gradient or pb.pullback")


for _cls in (CallbackOp, CallbackGradOp, HookOp):
    BATCH_RULES[_cls] = _no_batched_callbacks


def _no_batched_eager_update(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
                             batched: Sequence[bool]) -> SSAValue:
    assert isinstance(op, EagerUpdateOp)
    raise NotImplementedError(
        f"'{op.name}' of pb.eager_update ('{op.label.data}') cannot be batched: batched "
        "derivatives (jacobian, hessian) would apply one update per row; use pb.gradient")


BATCH_RULES[EagerUpdateOp] = _no_batched_eager_update


def _checkpoint_batch(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
                      batched: Sequence[bool]) -> SSAValue:
    """The region batched (its `vmap`), inlined."""
    from pullback.compiler.autodiff.checkpoint import inline_function, region_function
    from pullback.compiler.autodiff.vmap import build_vmap

    assert isinstance(op, CheckpointOp)
    module, fn = region_function(op)
    args = [i for i, b in enumerate(batched) if b]
    vm = build_vmap(module, fn, args, e.size, broadcast=True)
    return inline_function(e.block, vm, operands)[0]


BATCH_RULES[CheckpointOp] = _checkpoint_batch


def _no_batched_assign(e: BatchEmitter, op: Operation, operands: Sequence[SSAValue],
                       batched: Sequence[bool]) -> SSAValue:
    raise NotImplementedError(
        "an in-place write of a function argument (array.assign) cannot be batched: every "
        "row of a batched derivative (jacobian, hessian) would write the same array; compute "
        "the update with pb.gradient instead")


BATCH_RULES[A.AssignOp] = _no_batched_assign


def batch_rule(op: Operation) -> BatchRule:
    """The batching rule of `op`'s class."""
    rule = BATCH_RULES.get(type(op))
    if rule is None:
        dialect = op.name.split(".")[0]
        where = (f"in compiler/autodiff/rules/batch.py (the {dialect} dialect's ops)"
                 if dialect in ("array", "ad") else
                 "with pullback.compiler.register_op (an op defined outside pullback)")
        raise NotImplementedError(f"no batching rule for '{op.name}' (vmap); register one "
                                  f"{where}")
    return rule
