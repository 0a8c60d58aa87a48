"""Emitting array ops from DSL values: lifting, dtype promotion and broadcasting.

DSL functions accept tracers, numpy arrays and Python scalars. Inside a trace, numpy
arrays become hidden inputs (read at every call, never baked in) and Python scalars
become constants; then operands are converted to the common dtype and broadcast to
the common shape with explicit `array.convert` / `array.broadcast` ops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pullback.compiler.dialects import array as ad
from pullback.dsl import dtypes
from pullback.dsl.errors import ForeignTracerError, shape_error
from pullback.dsl.trace import Trace, current_trace
from pullback.dsl.tracer import Tracer

Scalar = bool | int | float | np.number | np.bool_


def is_scalar(x: object) -> bool:
    return isinstance(x, bool | int | float | np.number | np.bool_)


def trace_of(*values: object) -> Trace | None:
    """The trace values belong to: a tracer's, else the active one if arrays are involved."""
    found: Trace | None = None
    for v in values:
        if isinstance(v, Tracer):
            if found is not None and v.trace is not found:
                raise ForeignTracerError(
                    "values from two different traces were combined; a traced value "
                    "escaped the function it was created in"
                )
            found = v.trace
    if found is None and any(isinstance(v, np.ndarray) for v in values):
        found = current_trace()
    return found


def is_traced(*values: object) -> bool:
    return trace_of(*values) is not None


def lift(trace: Trace, x: object, dtype: np.dtype | None = None) -> Tracer:
    """A tracer for `x` (a tracer, numpy array, or Python scalar as a 0-d constant)."""
    if isinstance(x, Tracer):
        t = x
    elif isinstance(x, np.ndarray):
        t = trace.hidden_input(x)
    elif is_scalar(x):
        dt = dtype if dtype is not None else dtypes.canonical(np.asarray(x).dtype)
        return trace.full(_cast_scalar(x, dt), (), dt)
    elif isinstance(x, list | tuple):
        raise TypeError(
            f"a {type(x).__name__} is not an array; pass np.array(...) or use pb.stack"
        )
    else:
        from pullback.dsl.buffer import Buffer, not_an_array

        if isinstance(x, Buffer):
            raise not_an_array("an array operation")
        raise TypeError(
            f"unsupported operand of type {type(x).__name__}: pullback arrays combine "
            "with traced arrays, numpy arrays and Python numbers"
        )
    return astype(t, dtype) if dtype is not None else t


def _cast_scalar(x: Scalar, dt: np.dtype) -> float | int | bool:
    return np.asarray(x).astype(dt).item()


def astype(x: Tracer, dtype: np.dtype) -> Tracer:
    dtype = dtypes.canonical(dtype)
    if x.dtype == dtype:
        return x
    return x.trace.reuse((ad.ConvertOp.name, x.value, dtype),
                         lambda: ad.ConvertOp(x.value, dtypes.to_ir(dtype)))


def result_dtype(values: Sequence[object]) -> np.dtype:
    """numpy's promotion over arrays, with Python scalars weakly typed."""
    arrays = [v for v in values if not is_scalar(v)]
    scalars = [v for v in values if is_scalar(v)]
    if not arrays:
        return dtypes.canonical(np.result_type(*values))
    dt = dtypes.canonical(_dtype(arrays[0]))
    for a in arrays[1:]:
        dt = dtypes.promote(dt, dtypes.canonical(_dtype(a)))
    for s in scalars:
        dt = dtypes.promote_scalar(dt, s)
    return dt


def _dtype(x: object) -> np.dtype:
    if isinstance(x, np.ndarray):
        return dtypes.canonical(x.dtype)
    return x.dtype if isinstance(x, Tracer) else np.asarray(x).dtype


def shape_of(x: object) -> tuple[int, ...]:
    return tuple(x.shape) if isinstance(x, Tracer | np.ndarray) else ()


def broadcast_shape(shapes: Sequence[tuple[int, ...]], what: str) -> tuple[int, ...]:
    out: tuple[int, ...] = ()
    for s in shapes:
        b = ad.broadcast_shapes(out, s)
        if b is None:
            listed = " and ".join(str(tuple(x)) for x in shapes)
            raise shape_error(
                f"operands could not be broadcast together in {what}: shapes {listed}")
        out = b
    return out


def broadcast_to(x: Tracer, shape: tuple[int, ...]) -> Tracer:
    if x.shape == shape:
        return x
    if ad.broadcast_shapes(x.shape, shape) != shape or x.ndim > len(shape):
        raise shape_error(f"cannot broadcast an array of shape {x.shape} to shape {shape}")
    return x.trace.reuse((ad.BroadcastOp.name, x.value, tuple(shape)),
                         lambda: ad.BroadcastOp(x.value, shape))


def operands(trace: Trace, values: Sequence[object], dtype: np.dtype,
             what: str) -> list[Tracer]:
    """Lift, convert and broadcast `values` to one dtype and shape."""
    shape = broadcast_shape([shape_of(v) for v in values], what)
    out = []
    for v in values:
        if is_scalar(v):
            out.append(trace.full(_cast_scalar(v, dtype), shape, dtype))
        else:
            out.append(broadcast_to(lift(trace, v, dtype), shape))
    return out


_BOOL_AS_INT = (ad.AddOp, ad.MulOp, ad.MaximumOp, ad.MinimumOp)
"""Ops numpy gives bool results on bools, computed here on 0/1 integers: add and
maximum are `or`, mul and minimum are `and`."""

_NO_BOOL = {
    ad.SubOp: "numpy boolean subtract, the `-` operator, is not supported, use the "
              "bitwise_xor, the `^` operator, or the logical_xor function instead",
    ad.NegOp: "the numpy boolean negative, the `-` operator, is not supported, use the "
              "`~` operator or the logical_not function instead",
    ad.SignOp: "sign is not defined for bool arrays (numpy has no bool loop for it); "
               "convert with .astype(int) first",
}
"""Ops numpy refuses on bools, with what it says instead."""


def elementwise(op_cls: type, values: Sequence[object], what: str, *,
                float_result: bool = False, dtype: np.dtype | None = None) -> Tracer:
    """Emit an elementwise op over promoted, broadcast operands (bools as numpy treats
    them: `+`, `*`, maximum, minimum are logical, abs is the identity, `-` is refused)."""
    trace = trace_of(*values)
    assert trace is not None
    dt = dtype if dtype is not None else result_dtype(values)
    if float_result:
        dt = dtypes.float_of(dt)
    if dt == np.bool_ and op_cls in _NO_BOOL:
        raise TypeError(_NO_BOOL[op_cls])
    if dt == np.bool_ and op_cls is ad.AbsOp:
        return operands(trace, values, dt, what)[0]
    if dt == np.bool_ and op_cls in _BOOL_AS_INT:
        as_int = elementwise(op_cls, values, what, dtype=np.dtype(np.int64))
        return compare("ne", as_int, 0)
    ops = operands(trace, values, dt, what)
    return trace.emit(op_cls(*(o.value for o in ops)))


def compare(predicate: str, a: object, b: object) -> Tracer:
    trace = trace_of(a, b)
    assert trace is not None
    dt = result_dtype([a, b])
    x, y = operands(trace, [a, b], dt, f"comparison '{predicate}'")
    return trace.emit(ad.CompareOp(predicate, x.value, y.value))


def select(cond: object, a: object, b: object) -> Tracer:
    trace = trace_of(cond, a, b)
    assert trace is not None
    c = lift(trace, cond)
    if c.dtype != np.bool_:
        c = compare("ne", c, 0)
    dt = result_dtype([a, b])
    shape = broadcast_shape([c.shape, shape_of(a), shape_of(b)], "where")
    c = broadcast_to(c, shape)
    x, y = operands(trace, [a, b], dt, "where")
    x, y = broadcast_to(x, shape), broadcast_to(y, shape)
    return trace.emit(ad.SelectOp(c.value, x.value, y.value))


def normalize_axes(axis: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(
                f"axis {a} is out of bounds for an array of dimension {ndim}"
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate value in axis {axis}")
    return tuple(sorted(out))


def reshape(x: Tracer, shape: tuple[int, ...]) -> Tracer:
    if x.shape == shape:
        return x
    return x.trace.reuse((ad.ReshapeOp.name, x.value, tuple(shape)),
                         lambda: ad.ReshapeOp(x.value, shape))
