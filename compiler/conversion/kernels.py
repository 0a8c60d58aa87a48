"""Kernel bodies of the special ops, one loop-nest program per op, and plain copies.

Each `KERNELS[OpClass](e, op, out)` fills the flat buffer `out` with the result of a
scan, concatenation, slice update, scatter or literal array, computing operands
element-wise through the emitter `e`. Elementwise work and reductions are fused
kernels instead (`fused_kernel`).
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.ir import Operation, SSAValue

from pullback.compiler.conversion.combiners import combine
from pullback.compiler.conversion.element_emitter import (
    ElementEmitter,
    needs_multi_index,
    wrapped_index,
)
from pullback.compiler.conversion.element_index import Index, to_flat
from pullback.compiler.conversion.kernel_writer import KernelWriter, size_of
from pullback.compiler.diagnostics import located
from pullback.compiler.dialects import array as A


def _open_flat(w: KernelWriter, shape: tuple[int, ...]) -> tuple[Index, int]:
    """One loop over every element of `shape` (none for 0-d), as a flat index."""
    if not shape:
        return Index((), multi=()), 0
    return Index(shape, flat=w.open_parallel([size_of(shape)])[0]), 1


def _open_multi(w: KernelWriter, shape: tuple[int, ...]) -> tuple[Index, int]:
    return Index(shape, multi=w.open_nest(shape, parallel=True)), len(shape)


def map_kernel(e: ElementEmitter, value: SSAValue, out: SSAValue) -> None:
    """out[i] = value[i] for every element, one flat loop when no index maps need more."""
    shape = A.shape_of(value)
    e.reset()
    w = e.w
    multi = len(shape) > 1 and needs_multi_index(value, e.buffers)
    idx, depth = (_open_multi if multi else _open_flat)(w, shape)
    w.store(e.emit(value, idx), out, to_flat(w, idx))
    w.close_nest(depth)


def _constant_kernel(e: ElementEmitter, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, A.ConstantOp)
    el = A.element_type_of(op.result)
    values = op.value.get_values()
    if len(values) == 1:
        values = values * size_of(A.shape_of(op.result))
    for i, v in enumerate(values):
        e.w.store(e.w.constant(v, el), out, e.w.index(i))


# -- scans and indexing -------------------------------------------------------

def _cumsum_kernel(e: ElementEmitter, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, A.CumsumOp)
    w = e.w
    shape, el = A.shape_of(op.result), A.element_type_of(op.result)
    if not shape:
        map_kernel(e, op.operand, out)
        return
    axis = op.axis.value.data
    e.reset()
    outer = [d for i, d in enumerate(shape) if i != axis]
    ivs = list(w.open_nest(outer, parallel=True))
    n = shape[axis]
    i, (acc,) = w.open_loop(n, [w.constant(0, el)])
    pos = w.affine(i, -1, n - 1) if op.reverse is not None else i
    idx = Index(shape, multi=(*ivs[:axis], pos, *ivs[axis:]))
    acc = combine(w, op, acc, e.emit(op.operand, idx))
    w.store(acc, out, to_flat(w, idx))
    w.close_loop([acc])
    w.close_nest(len(outer))


# -- indexing -----------------------------------------------------------------

def _store_window(e: ElementEmitter, value: SSAValue, out: SSAValue,
                  out_shape: tuple[int, ...], start: tuple[int, ...],
                  stride: tuple[int, ...]) -> None:
    """out[start + i * stride] = value[i] for every element i of `value`."""
    w = e.w
    shape = A.shape_of(value)
    e.reset()
    ivs = w.open_nest(shape, parallel=True)
    dst = tuple(w.affine(i, st, s) for i, st, s in zip(ivs, stride, start, strict=True))
    w.store(e.emit(value, Index(shape, multi=ivs)), out, to_flat(w, Index(out_shape, multi=dst)))
    w.close_nest(len(shape))


def _concatenate_kernel(e: ElementEmitter, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, A.ConcatenateOp)
    axis, out_shape = op.axis.value.data, A.shape_of(op.result)
    offset = 0
    for v in op.inputs:
        start = tuple(offset if i == axis else 0 for i in range(len(out_shape)))
        _store_window(e, v, out, out_shape, start, (1,) * len(out_shape))
        offset += A.shape_of(v)[axis]


def _update_slice_kernel(e: ElementEmitter, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, A.UpdateSliceOp)
    map_kernel(e, op.base_, out)
    _store_window(e, op.value, out, A.shape_of(op.result), op.starts, op.strides)


def _scatter_add_kernel(e: ElementEmitter, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, A.ScatterAddOp)
    map_kernel(e, op.base_, out)
    w = e.w
    axis, shape = op.axis.value.data, A.shape_of(op.updates)
    base_shape, ni = A.shape_of(op.result), len(A.shape_of(op.indices))
    e.reset()
    ivs = (*w.open_nest(shape[:axis], parallel=True), *w.open_nest(shape[axis:axis + ni]),
           *w.open_nest(shape[axis + ni:], parallel=True))
    raw = e.emit(op.indices, Index(A.shape_of(op.indices), multi=ivs[axis:axis + ni]))
    pos = wrapped_index(e, raw, base_shape[axis])
    dst = to_flat(w, Index(base_shape, multi=(*ivs[:axis], pos, *ivs[axis + ni:])))
    acc = w.load(out, dst, A.element_type_of(op.result))
    w.store(combine(w, op, acc, e.emit(op.updates, Index(shape, multi=ivs))), out, dst)
    w.close_nest(len(shape))


KernelRule = Callable[[ElementEmitter, Operation, SSAValue], None]

KERNELS: dict[type[Operation], KernelRule] = {
    A.ConstantOp: _constant_kernel,
    A.CumsumOp: _cumsum_kernel,
    A.ConcatenateOp: _concatenate_kernel,
    A.UpdateSliceOp: _update_slice_kernel,
    A.ScatterAddOp: _scatter_add_kernel,
}


def build_kernel(e: ElementEmitter, op: Operation, out: SSAValue) -> None:
    """Fill `out` with the result of special op `op`."""
    rule = KERNELS.get(type(op))
    if rule is None:
        raise NotImplementedError(located(op, f"'{op.name}' has no kernel-level lowering"))
    rule(e, op, out)
