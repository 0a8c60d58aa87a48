"""The array DSL: numpy-named functions that trace inside a trace and run numpy outside.

Each function accepts tracers, numpy arrays and Python numbers. When any argument is
traced (or a trace is active and an argument is a numpy array), it records array
ops; otherwise it is exactly the numpy function, so one function runs both ways.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from types import FunctionType
from typing import Any

import numpy as np
from xdsl.ir import Operation

from pullback.compiler.dialects import array as ad
from pullback.compiler.dialects.ad import StopGradientOp
from pullback.compiler.dialects.traits import FloatOnly, has
from pullback.dsl import core, dtypes
from pullback.dsl.core import compare, elementwise, is_traced, lift, trace_of
from pullback.dsl.errors import shape_error
from pullback.dsl.trace import current_trace
from pullback.dsl.tracer import Tracer

ArrayLike = Any


def _unary(name: str, op_cls: type[Operation],
           np_fn: Callable[[Any], Any]) -> Callable[[ArrayLike], ArrayLike]:
    float_result = has(op_cls, FloatOnly)

    def fn(x: ArrayLike) -> ArrayLike:
        if not is_traced(x):
            return np_fn(x)
        return elementwise(op_cls, [x], name, float_result=float_result)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise `{name}`, as numpy's `np.{np_fn.__name__}`."
    return fn


def _binary(name: str, op_cls: type[Operation],
            np_fn: Callable[[Any, Any], Any]) -> Callable[[ArrayLike, ArrayLike], ArrayLike]:
    float_result = has(op_cls, FloatOnly)

    def fn(x: ArrayLike, y: ArrayLike) -> ArrayLike:
        if not is_traced(x, y):
            return np_fn(x, y)
        return elementwise(op_cls, [x, y], name, float_result=float_result)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise `{name}` with broadcasting, as numpy's `np.{np_fn.__name__}`."
    return fn


def _comparison(name: str, predicate: str, np_fn: Callable[[Any, Any], Any]) -> Callable:
    def fn(x: ArrayLike, y: ArrayLike) -> ArrayLike:
        if not is_traced(x, y):
            return np_fn(x, y)
        return compare(predicate, x, y)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise comparison, as numpy's `np.{np_fn.__name__}`; gives a bool mask."
    return fn


# -- elementwise ------------------------------------------------------------------------

negative = _unary("negative", ad.NegOp, np.negative)
abs = _unary("abs", ad.AbsOp, np.abs)  # noqa: A001
sign = _unary("sign", ad.SignOp, np.sign)
exp = _unary("exp", ad.ExpOp, np.exp)
log = _unary("log", ad.LogOp, np.log)
log1p = _unary("log1p", ad.Log1pOp, np.log1p)
expm1 = _unary("expm1", ad.Expm1Op, np.expm1)
sqrt = _unary("sqrt", ad.SqrtOp, np.sqrt)
sin = _unary("sin", ad.SinOp, np.sin)
cos = _unary("cos", ad.CosOp, np.cos)
tan = _unary("tan", ad.TanOp, np.tan)
tanh = _unary("tanh", ad.TanhOp, np.tanh)
sinh = _unary("sinh", ad.SinhOp, np.sinh)
cosh = _unary("cosh", ad.CoshOp, np.cosh)
arcsin = _unary("arcsin", ad.ArcsinOp, np.arcsin)
arccos = _unary("arccos", ad.ArccosOp, np.arccos)
arctan = _unary("arctan", ad.ArctanOp, np.arctan)

add = _binary("add", ad.AddOp, np.add)
subtract = _binary("subtract", ad.SubOp, np.subtract)
multiply = _binary("multiply", ad.MulOp, np.multiply)
divide = _binary("divide", ad.DivOp, np.divide)
maximum = _binary("maximum", ad.MaximumOp, np.maximum)
minimum = _binary("minimum", ad.MinimumOp, np.minimum)
arctan2 = _binary("arctan2", ad.Arctan2Op, np.arctan2)

less = _comparison("less", "lt", np.less)
less_equal = _comparison("less_equal", "le", np.less_equal)
greater = _comparison("greater", "gt", np.greater)
greater_equal = _comparison("greater_equal", "ge", np.greater_equal)
equal = _comparison("equal", "eq", np.equal)
not_equal = _comparison("not_equal", "ne", np.not_equal)


def square(x: ArrayLike) -> ArrayLike:
    """Elementwise `x * x`, as numpy's `np.square`."""
    return multiply(x, x) if is_traced(x) else np.square(x)


def power(x: ArrayLike, y: ArrayLike) -> ArrayLike:
    """Elementwise `x ** y`, as numpy's `np.power`; small integer exponents multiply."""
    if not is_traced(x, y):
        return np.power(x, y)
    if isinstance(y, int | np.integer) and not isinstance(y, bool) and 0 <= y <= 4:
        dt = core.result_dtype([x, y])
        t = core.astype(lift(trace_of(x, y), x), dt)
        if y == 0:
            return t.trace.full(1, t.shape, dt)
        out = t
        for _ in range(int(y) - 1):
            out = multiply(out, t)
        return out
    return elementwise(ad.PowOp, [x, y], "power", float_result=has(ad.PowOp, FloatOnly))


def clip(x: ArrayLike, a_min: ArrayLike = None, a_max: ArrayLike = None) -> ArrayLike:
    """Limit values to [a_min, a_max] (either may be None), as numpy's `np.clip`."""
    if not is_traced(x, a_min, a_max):
        return np.clip(x, a_min, a_max)
    out = x
    if a_min is not None:
        out = maximum(out, a_min)
    if a_max is not None:
        out = minimum(out, a_max)
    return out


def where(cond: ArrayLike, x: ArrayLike, y: ArrayLike) -> ArrayLike:
    """Elementwise choice `x if cond else y` with broadcasting, as numpy's `np.where`."""
    if not is_traced(cond, x, y):
        return np.where(cond, x, y)
    return core.select(cond, x, y)


def logical_and(x: ArrayLike, y: ArrayLike) -> ArrayLike:
    """Elementwise `and` of masks."""
    if not is_traced(x, y):
        return np.logical_and(x, y)
    return core.select(_mask(x), _mask(y), False)


def logical_or(x: ArrayLike, y: ArrayLike) -> ArrayLike:
    """Elementwise `or` of masks."""
    if not is_traced(x, y):
        return np.logical_or(x, y)
    return core.select(_mask(x), True, _mask(y))


def logical_not(x: ArrayLike) -> ArrayLike:
    """Elementwise `not` of a mask."""
    if not is_traced(x):
        return np.logical_not(x)
    return core.select(_mask(x), False, True)


def _mask(x: ArrayLike) -> ArrayLike:
    if isinstance(x, Tracer) and x.dtype == np.bool_:
        return x
    if core.is_scalar(x):
        return bool(x)
    t = lift(trace_of(x), x)
    return t if t.dtype == np.bool_ else compare("ne", t, 0)


def astype(x: ArrayLike, dtype: Any) -> ArrayLike:
    """`x` converted to `dtype` (float64, float32, integer or bool)."""
    if not is_traced(x):
        return np.asarray(x).astype(dtype)
    return core.astype(lift(trace_of(x), x), dtypes.canonical(np.dtype(dtype)))


# -- reductions -------------------------------------------------------------------------


def _reduce(name: str, op_cls: type, np_fn: Callable, x: ArrayLike, axis: Any,
            keepdims: bool) -> ArrayLike:
    if not is_traced(x):
        return np_fn(x, axis=axis, keepdims=keepdims)
    t = lift(trace_of(x), x)
    if op_cls in (ad.ReduceSumOp, ad.ReduceProdOp) and t.dtype == np.bool_:
        t = core.astype(t, np.dtype(np.int64))
    axes = core.normalize_axes(axis, t.ndim)
    if op_cls in (ad.ReduceMaxOp, ad.ReduceMinOp) and any(t.shape[a] == 0 for a in axes):
        raise ValueError(f"zero-size array to reduction operation {name}, which has no identity")
    if op_cls in (ad.ReduceMaxOp, ad.ReduceMinOp) and t.dtype == np.bool_ and axes:
        # any / all: the max / min of 0/1 integers, back to bool
        as_int = core.astype(t, np.dtype(np.int64))
        out = compare("ne", t.trace.emit(op_cls(as_int.value, axes)), 0)
    else:
        out = t.trace.emit(op_cls(t.value, axes)) if axes else t
    if keepdims:
        out = core.reshape(out, tuple(1 if i in axes else d for i, d in enumerate(t.shape)))
    return out


def sum(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> ArrayLike:  # noqa: A001
    """Sum over `axis` (None: all axes), as numpy's `np.sum`."""
    return _reduce("sum", ad.ReduceSumOp, np.sum, x, axis, keepdims)


def prod(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> ArrayLike:
    """Product over `axis` (None: all axes), as numpy's `np.prod`."""
    return _reduce("prod", ad.ReduceProdOp, np.prod, x, axis, keepdims)


def max(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> ArrayLike:  # noqa: A001
    """Maximum over `axis` (None: all axes), as numpy's `np.max`."""
    return _reduce("maximum", ad.ReduceMaxOp, np.max, x, axis, keepdims)


def min(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> ArrayLike:  # noqa: A001
    """Minimum over `axis` (None: all axes), as numpy's `np.min`."""
    return _reduce("minimum", ad.ReduceMinOp, np.min, x, axis, keepdims)


def mean(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> ArrayLike:
    """Arithmetic mean over `axis` (None: all axes), as numpy's `np.mean`."""
    if not is_traced(x):
        return np.mean(x, axis=axis, keepdims=keepdims)
    t = lift(trace_of(x), x)
    axes = core.normalize_axes(axis, t.ndim)
    n = int(np.prod([t.shape[a] for a in axes], dtype=np.int64))
    s = sum(core.astype(t, dtypes.float_of(t.dtype)), axis=axes, keepdims=keepdims)
    return divide(s, n)


def logsumexp(x: ArrayLike, axis: Any = None, keepdims: bool = False) -> ArrayLike:
    """`log(sum(exp(x), axis))`, computed stably by shifting with the maximum, as scipy's
    `scipy.special.logsumexp`.

    Infinite entries give the limits: a slice that is all `-inf` gives `-inf`, one that
    holds a `+inf` gives `+inf`. The gradient is `softmax(x, axis)` where the result is
    finite (`-inf` entries get 0) and 0 where the result is infinite: there no finite
    change of the inputs changes the result.
    """
    x = _floating(x)
    m, shifted = _shifted_by_max(x, axis)
    total = sum(exp(shifted), axis=axis, keepdims=True)
    out = log(where(less(abs(m), np.inf), total, 1.0)) + m
    if keepdims:
        return out
    return reshape(out, _shape_after_reduce(core.shape_of(x), axis))


def softmax(x: ArrayLike, axis: Any = None) -> ArrayLike:
    """`exp(x) / sum(exp(x), axis)` over `axis` (None: all axes), computed stably, as
    scipy's `scipy.special.softmax`.

    Infinite entries give the limits: `-inf` entries get weight 0; in a slice holding
    `+inf` entries those share the weight equally (`softmax([inf, 0])` is `[1, 0]`); a
    slice that is all `-inf` (a fully masked row) gets weight 0 everywhere. The
    derivative is 0 in slices holding `+inf` or all `-inf`.
    """
    x = _floating(x)
    m, shifted = _shifted_by_max(x, axis)
    weights = where(equal(m, np.inf), equal(x, np.inf), exp(shifted))
    total = sum(weights, axis=axis, keepdims=True)
    return weights / where(greater(total, 0.0), total, 1.0)


def _floating(x: ArrayLike) -> ArrayLike:
    if is_traced(x):
        t = lift(trace_of(x), x)
        return core.astype(t, dtypes.float_of(t.dtype))
    return np.asarray(x, dtype=np.result_type(x, np.float32))


def _shifted_by_max(x: ArrayLike, axis: Any) -> tuple[ArrayLike, ArrayLike]:
    """(m, s): the maximum `m` over `axis` (kept dims, no derivative) and `s = x - m`,
    except that in slices whose maximum is infinite `s` is `-inf`, so `exp(s)` and
    every derivative through it are finite (never `inf - inf` or `0 * inf`).

    Treating `m` as a constant is exact for every derivative order: the identities
    `logsumexp(x) = log(sum(exp(x - c))) + c` and `softmax(x) = softmax(x - c)` hold
    for any constant `c`. NaN entries propagate.
    """
    m = ignore_derivatives(max(x, axis=axis, keepdims=True))
    finite = less(abs(m), np.inf)
    shifted = where(not_equal(abs(m), np.inf), x - where(finite, m, 0.0), -np.inf)
    return m, shifted


def _shape_after_reduce(shape: tuple[int, ...], axis: Any) -> tuple[int, ...]:
    axes = core.normalize_axes(axis, len(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def cumsum(x: ArrayLike, axis: int | None = None) -> ArrayLike:
    """Running sum along `axis` (None: over the flattened array), as numpy's `np.cumsum`."""
    if not is_traced(x):
        return np.cumsum(x, axis=axis)
    t = lift(trace_of(x), x)
    if t.dtype == np.bool_:
        t = core.astype(t, np.dtype(np.int64))
    if axis is None:
        t, ax = ravel(t), 0
    else:
        (ax,) = core.normalize_axes(axis, t.ndim)
    return t.trace.emit(ad.CumsumOp(t.value, ax))


# -- shapes -----------------------------------------------------------------------------


def reshape(x: ArrayLike, shape: Any) -> ArrayLike:
    """The same elements in row-major order with a new shape (one entry may be -1)."""
    if not is_traced(x):
        return np.reshape(x, shape)
    t = lift(trace_of(x), x)
    shape = (shape,) if isinstance(shape, int | np.integer) else tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ValueError("can only specify one unknown dimension (-1) in reshape")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        if known == 0 or t.size % known:
            raise shape_error(f"cannot reshape an array of shape {t.shape} into shape {shape}")
        shape = tuple(t.size // known if s == -1 else s for s in shape)
    if int(np.prod(shape, dtype=np.int64)) != t.size:
        raise shape_error(f"cannot reshape an array of shape {t.shape} into shape {shape}")
    return core.reshape(t, shape)


def ravel(x: ArrayLike) -> ArrayLike:
    """The elements as a 1-d array in row-major order."""
    return reshape(x, (-1,)) if is_traced(x) else np.ravel(x)


def squeeze(x: ArrayLike, axis: Any = None) -> ArrayLike:
    """Remove size-1 dimensions (all, or those in `axis`)."""
    if not is_traced(x):
        return np.squeeze(x, axis=axis)
    t = lift(trace_of(x), x)
    axes = (tuple(i for i, d in enumerate(t.shape) if d == 1) if axis is None
            else core.normalize_axes(axis, t.ndim))
    if any(t.shape[a] != 1 for a in axes):
        raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return core.reshape(t, tuple(d for i, d in enumerate(t.shape) if i not in axes))


def expand_dims(x: ArrayLike, axis: int) -> ArrayLike:
    """Insert a size-1 dimension at `axis`."""
    if not is_traced(x):
        return np.expand_dims(x, axis)
    t = lift(trace_of(x), x)
    (ax,) = core.normalize_axes(axis, t.ndim + 1)
    return core.reshape(t, (*t.shape[:ax], 1, *t.shape[ax:]))


def broadcast_to(x: ArrayLike, shape: Any) -> ArrayLike:
    """`x` broadcast to `shape` by numpy's rules."""
    if not is_traced(x):
        return np.broadcast_to(x, shape)
    shape = (shape,) if isinstance(shape, int | np.integer) else tuple(int(s) for s in shape)
    return core.broadcast_to(lift(trace_of(x), x), shape)


def transpose(x: ArrayLike, axes: Sequence[int] | None = None) -> ArrayLike:
    """Permute dimensions (default: reverse them), as numpy's `np.transpose`."""
    if not is_traced(x):
        return np.transpose(x, axes)
    t = lift(trace_of(x), x)
    perm = tuple(reversed(range(t.ndim))) if axes is None else tuple(
        a % t.ndim if t.ndim else a for a in (int(v) for v in axes))
    if sorted(perm) != list(range(t.ndim)):
        raise ValueError(f"axes {tuple(axes or ())} don't match an array of dimension {t.ndim}")
    if perm == tuple(range(t.ndim)):
        return t
    return t.trace.emit(ad.TransposeOp(t.value, perm))


def concatenate(arrays: Sequence[ArrayLike], axis: int = 0) -> ArrayLike:
    """Join arrays along an existing axis, as numpy's `np.concatenate`."""
    arrays = list(arrays)
    if not is_traced(*arrays):
        return np.concatenate(arrays, axis=axis)
    trace = trace_of(*arrays)
    dt = core.result_dtype(arrays)
    ts = [lift(trace, a, dt) for a in arrays]
    if any(t.ndim == 0 for t in ts):
        raise ValueError("zero-dimensional arrays cannot be concatenated; use pb.stack")
    (ax,) = core.normalize_axes(axis, ts[0].ndim)
    for t in ts[1:]:
        if t.ndim != ts[0].ndim or any(
                a != b for i, (a, b) in enumerate(zip(t.shape, ts[0].shape)) if i != ax):
            listed = ", ".join(str(t.shape) for t in ts)
            raise shape_error(
                f"concatenate along axis {ax} needs equal other dimensions, got shapes {listed}")
    if len(ts) == 1:
        return ts[0]
    return trace.emit(ad.ConcatenateOp([t.value for t in ts], ax))


def stack(arrays: Sequence[ArrayLike], axis: int = 0) -> ArrayLike:
    """Join equally shaped arrays along a new axis, as numpy's `np.stack`."""
    arrays = list(arrays)
    if not is_traced(*arrays):
        return np.stack(arrays, axis=axis)
    trace = trace_of(*arrays)
    dt = core.result_dtype(arrays)
    ts = [lift(trace, a, dt) for a in arrays]
    if len({t.shape for t in ts}) != 1:
        listed = ", ".join(str(t.shape) for t in ts)
        raise shape_error(f"stack needs arrays of one shape, got shapes {listed}")
    return concatenate([expand_dims(t, axis) for t in ts], axis=axis)


# -- linear algebra ---------------------------------------------------------------------


def matmul(x: ArrayLike, y: ArrayLike) -> ArrayLike:
    """Matrix product with numpy's rules for 1-d operands and batch broadcasting."""
    if not is_traced(x, y):
        return np.matmul(x, y)
    trace = trace_of(x, y)
    dt = dtypes.float_of(core.result_dtype([x, y]))
    a, b = lift(trace, x, dt), lift(trace, y, dt)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: input operand does not have enough dimensions (0-d); use *")
    a2 = core.reshape(a, (1, a.shape[0])) if a.ndim == 1 else a
    b2 = core.reshape(b, (b.shape[0], 1)) if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise shape_error(
            f"matmul: shapes {a.shape} and {b.shape} are not aligned "
            f"({a2.shape[-1]} != {b2.shape[-2]})")
    batch = core.broadcast_shape([a2.shape[:-2], b2.shape[:-2]], "matmul batch dimensions")
    a2 = core.broadcast_to(a2, (*batch, *a2.shape[-2:]))
    b2 = core.broadcast_to(b2, (*batch, *b2.shape[-2:]))
    out = trace.emit(ad.MatmulOp(a2.value, b2.value))
    shape = list(out.shape)
    if b.ndim == 1:
        shape.pop(-1)
    if a.ndim == 1:
        shape.pop(-2 if b.ndim != 1 else -1)
    return core.reshape(out, tuple(shape))


def dot(x: ArrayLike, y: ArrayLike) -> ArrayLike:
    """numpy's `np.dot` for operands of at most two dimensions."""
    if not is_traced(x, y):
        return np.dot(x, y)
    if core.shape_of(x) == () or core.shape_of(y) == ():
        return multiply(x, y)
    if len(core.shape_of(x)) > 2 or len(core.shape_of(y)) > 2:
        raise TypeError("pb.dot supports operands of at most 2 dimensions; use pb.matmul")
    return matmul(x, y)


# -- derivatives ------------------------------------------------------------------------


def ignore_derivatives(x: Any) -> Any:
    """`x` itself, with every derivative through it blocked (treated as a constant).

    `x` may be an array, a number or a tuple/list/dict/NamedTuple/dataclass of them.
    Given a zero-argument callable instead, calls it and blocks the derivatives of every
    traced value it returns: `pb.ignore_derivatives(lambda: expensive_statistics(x))`.
    Outside a trace it returns `x` (or calls the function) and does nothing else.
    """
    if callable(x) and not isinstance(x, Tracer | np.ndarray):
        return _map_leaves(_stop, x())
    return _map_leaves(_stop, x)


def _stop(x: Any) -> Any:
    trace = current_trace()
    if isinstance(x, np.ndarray) and trace is not None and trace.is_param(x):
        x = trace.hidden_input(x)
    if not isinstance(x, Tracer):
        return x
    return x.trace.emit(StopGradientOp(x.value))


def _map_leaves(fn: Callable[[Any], Any], x: Any) -> Any:
    """`x` with `fn` applied to each leaf of its tuples, lists, dicts and dataclasses."""
    if isinstance(x, tuple) and hasattr(type(x), "_fields"):
        return type(x)(*(_map_leaves(fn, v) for v in x))
    if isinstance(x, tuple | list):
        return type(x)(_map_leaves(fn, v) for v in x)
    if isinstance(x, dict):
        return {k: _map_leaves(fn, v) for k, v in x.items()}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        fields = {f.name: _map_leaves(fn, getattr(x, f.name))
                  for f in dataclasses.fields(x) if f.init}
        return dataclasses.replace(x, **fields)
    return fn(x)


# The DSL's public functions: every public function this module defines. `pullback.dsl`
# exports them and `numpy_dispatch` maps numpy's spellings to them, so a new function
# here is exported and dispatched with no list to extend.
__all__ = sorted(name for name, value in list(globals().items())
                 if not name.startswith("_") and isinstance(value, FunctionType)
                 and value.__module__ == __name__)
