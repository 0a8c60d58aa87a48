"""Kernel bodies: one loop-nest program per root op, writing its output buffer.

Each `KERNELS[OpClass](e, op, out)` fills the flat buffer `out` with the result of
root `op`, computing operands element-wise through the emitter `e` (fusion). A
fusible op that is materialized uses `map_kernel`.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.dialects import arith
from xdsl.dialects.builtin import AnyFloat, i1
from xdsl.dialects.utils.fast_math import FastMathFlag
from xdsl.ir import Attribute, Operation, SSAValue

from pullback.compiler.conversion.element_emitter import (
    ElementEmitter,
    needs_multi_index,
    wrapped_index,
)
from pullback.compiler.conversion.element_index import Index, to_flat, to_multi
from pullback.compiler.conversion.kernel_writer import KernelWriter, size_of
from pullback.compiler.dialects import array as A

REDUCE_FLAGS = arith.FastMathFlagsAttr([FastMathFlag.REASSOC, FastMathFlag.ALLOW_CONTRACT])


def _open_flat(w: KernelWriter, shape: tuple[int, ...]) -> tuple[Index, int]:
    """One loop over every element of `shape` (none for 0-d), as a flat index."""
    if not shape:
        return Index((), multi=()), 0
    return Index(shape, flat=w.open_loop(size_of(shape))[0]), 1


def _open_multi(w: KernelWriter, shape: tuple[int, ...]) -> tuple[Index, int]:
    return Index(shape, multi=w.open_nest(shape)), len(shape)


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


# -- reductions ---------------------------------------------------------------

def _combine(w: KernelWriter, op: Operation, acc: SSAValue, x: SSAValue) -> SSAValue:
    is_float = isinstance(acc.type, AnyFloat)
    if acc.type == i1:
        raise NotImplementedError(f"'{op.name}' has no lowering for element type i1")
    match op:
        case A.ReduceSumOp() | A.CumsumOp() | A.ScatterAddOp():
            new = arith.AddfOp(acc, x, REDUCE_FLAGS) if is_float else arith.AddiOp(acc, x)
        case A.ReduceProdOp():
            new = arith.MulfOp(acc, x, REDUCE_FLAGS) if is_float else arith.MuliOp(acc, x)
        case A.ReduceMaxOp():
            new = arith.MaximumfOp(acc, x, REDUCE_FLAGS) if is_float else arith.MaxSIOp(acc, x)
        case _:
            new = arith.MinimumfOp(acc, x, REDUCE_FLAGS) if is_float else arith.MinSIOp(acc, x)
    return w.add(new)


def _identity(op: Operation, el: Attribute) -> float | int:
    is_float = isinstance(el, AnyFloat)
    match op:
        case A.ReduceSumOp():
            return 0.0 if is_float else 0
        case A.ReduceProdOp():
            return 1.0 if is_float else 1
        case A.ReduceMaxOp():
            return float("-inf") if is_float else -(2**63)
        case _:
            return float("inf") if is_float else 2**63 - 1


def _reduce_kernel(e: ElementEmitter, op: Operation, out: SSAValue) -> None:
    assert isinstance(op, A.ReduceOp)
    src, axes = A.shape_of(op.operand), op.axis_list
    if axes and len(src) - 1 not in axes:
        _reduce_into_output(e, op, out)
        return
    w = e.w
    e.reset()
    kept = tuple(d for i, d in enumerate(src) if i not in axes)
    red = tuple(src[i] for i in axes)
    suffix = tuple(axes) == tuple(range(len(kept), len(src)))
    flat = suffix and not needs_multi_index(op.operand, e.buffers)
    out_idx, depth = (_open_flat if flat else _open_multi)(w, kept)
    acc = w.constant(_identity(op, A.element_type_of(op.result)), A.element_type_of(op.result))
    if flat:
        r, (acc_in,) = w.open_loop(size_of(red), [acc]) if red else (w.index(0), (acc,))
        base = w.mul_index(to_flat(w, out_idx), size_of(red))
        src_idx = Index(src, flat=w.add_index(base, r) if kept else r)
        loops = 1 if red else 0
    else:
        ivs, acc_in = [], acc
        for d in red:
            iv, (acc_in,) = w.open_loop(d, [acc_in])
            ivs.append(iv)
        kept_iter, red_iter = iter(to_multi(w, out_idx)), iter(ivs)
        multi = tuple(next(red_iter) if i in axes else next(kept_iter) for i in range(len(src)))
        src_idx, loops = Index(src, multi=multi), len(red)
    result = _combine(w, op, acc_in, e.emit(op.operand, src_idx))
    for _ in range(loops):
        (result,) = w.close_loop([result])
    w.store(result, out, to_flat(w, out_idx))
    w.close_nest(depth)


def _reduce_into_output(e: ElementEmitter, op: A.ReduceOp, out: SSAValue) -> None:
    """Reduction keeping the last axis: sweep the source in order, accumulate in `out`."""
    w = e.w
    el = A.element_type_of(op.result)
    src, axes = A.shape_of(op.operand), op.axis_list
    kept = tuple(d for i, d in enumerate(src) if i not in axes)
    idx, depth = _open_flat(w, kept)
    w.store(w.constant(_identity(op, el), el), out, to_flat(w, idx))
    w.close_nest(depth)
    e.reset()
    ivs = w.open_nest(src)
    out_idx = Index(kept, multi=tuple(iv for i, iv in enumerate(ivs) if i not in axes))
    offset = to_flat(w, out_idx)
    acc = w.load(out, offset, el)
    w.store(_combine(w, op, acc, e.emit(op.operand, Index(src, multi=ivs))), out, offset)
    w.close_nest(len(src))


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
    ivs = list(w.open_nest(outer))
    n = shape[axis]
    i, (acc,) = w.open_loop(n, [w.constant(0, el)])
    pos = w.affine(i, -1, n - 1) if op.reverse is not None else i
    idx = Index(shape, multi=(*ivs[:axis], pos, *ivs[axis:]))
    acc = _combine(w, op, acc, e.emit(op.operand, idx))
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
    ivs = w.open_nest(shape)
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
    ivs = w.open_nest(shape)
    raw = e.emit(op.indices, Index(A.shape_of(op.indices), multi=ivs[axis:axis + ni]))
    pos = wrapped_index(e, raw, base_shape[axis])
    dst = to_flat(w, Index(base_shape, multi=(*ivs[:axis], pos, *ivs[axis + ni:])))
    acc = w.load(out, dst, A.element_type_of(op.result))
    w.store(_combine(w, op, acc, e.emit(op.updates, Index(shape, multi=ivs))), out, dst)
    w.close_nest(len(shape))


KernelRule = Callable[[ElementEmitter, Operation, SSAValue], None]

KERNELS: dict[type[Operation], KernelRule] = {
    A.ConstantOp: _constant_kernel,
    A.ReduceSumOp: _reduce_kernel,
    A.ReduceProdOp: _reduce_kernel,
    A.ReduceMaxOp: _reduce_kernel,
    A.ReduceMinOp: _reduce_kernel,
    A.CumsumOp: _cumsum_kernel,
    A.ConcatenateOp: _concatenate_kernel,
    A.UpdateSliceOp: _update_slice_kernel,
    A.ScatterAddOp: _scatter_add_kernel,
}


def build_kernel(e: ElementEmitter, op: Operation, out: SSAValue) -> None:
    """Fill `out` with the result of root `op`."""
    rule = KERNELS.get(type(op))
    if rule is not None and not (isinstance(op, A.ConstantOp) and op.value.is_splat()):
        rule(e, op, out)
    else:
        map_kernel(e, op.results[0], out)
