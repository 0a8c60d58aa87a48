"""`pb.Array`: a numpy array whose reads can be traced, for implicit parameters.

An `Array` is an ordinary numpy array everywhere. While `pb.gradient(f, ps)` traces `f`
with `ps` a `pb.Params`, every operation that reads one of the Params' Arrays (an
operator, a numpy ufunc or function, indexing, a method) is recorded instead of
computed, so the array becomes a differentiable input of the traced program.

Values computed from an Array (operators, ufuncs, numpy functions, indexing) are plain
numpy arrays: only the arrays made with `pb.array` are parameters. Methods that copy or
re-view the array itself (`copy`, `reshape`, `view`, ...) keep the class, as numpy
subclasses do. Arrays hash by identity, so they can key a `dict` or `pb.IdDict`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pullback.dsl import Tracer, dtypes, numpy_dispatch
from pullback.dsl.trace import Trace, current_trace

# Methods that, on a parameter being traced, are the traced array's method.
_TRACED_METHODS = (
    "sum", "prod", "max", "min", "mean", "cumsum", "reshape", "transpose", "astype",
    "ravel", "flatten", "squeeze", "dot", "clip", "copy", "__getitem__", "__iter__",
)


def _param_trace(values: Any) -> Trace | None:
    """The active trace if one of `values` (or of a list/tuple among them) is its parameter."""
    trace = current_trace()
    if trace is None:
        return None
    for v in values:
        items = v if isinstance(v, list | tuple) else (v,)
        if any(isinstance(x, Array) and trace.is_param(x) for x in items):
            return trace
    return None


def _has_tracer(values: Any) -> bool:
    return any(isinstance(x, Tracer) or (isinstance(x, list | tuple) and _has_tracer(x))
               for x in values)


def _plain(x: Any) -> Any:
    """`x` as a base-class numpy array if it is an Array (tuples element by element)."""
    if isinstance(x, Array):
        return x.view(np.ndarray)
    if isinstance(x, tuple):
        return tuple(_plain(v) for v in x)
    return x


class Array(np.ndarray):
    """A numpy array that can be an implicit parameter (see `pb.Params`)."""

    __hash__ = object.__hash__  # type: ignore[assignment]

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if _param_trace(inputs) is not None:
            return numpy_dispatch.array_ufunc(ufunc, method, inputs, kwargs)
        if _has_tracer(inputs):
            return NotImplemented
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        result = getattr(ufunc, method)(*(_plain(x) for x in inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return result

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if _param_trace((*args, *kwargs.values())) is not None:
            return numpy_dispatch.array_function(func, args, kwargs)
        if _has_tracer((*args, *kwargs.values())):
            return NotImplemented
        result = super().__array_function__(func, types, args, kwargs)
        if "out" in kwargs and kwargs["out"] is not None:
            return result
        return _plain(result)

    @property
    def T(self) -> Any:  # noqa: N802
        trace = current_trace()
        if trace is not None and trace.is_param(self):
            return trace.hidden_input(self).T
        return np.ndarray.T.__get__(self)


def _traced_method(name: str) -> Callable[..., Any]:
    plain = getattr(np.ndarray, name)

    def method(self: Array, *args: Any, **kwargs: Any) -> Any:
        trace = current_trace()
        if trace is not None and (trace.is_param(self) or _has_tracer(args)):
            return getattr(trace.hidden_input(self), name)(*args, **kwargs)
        if name in ("__getitem__", "__iter__"):
            return plain(self.view(np.ndarray), *args, **kwargs)
        return plain(self, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = plain.__doc__
    return method


for _name in _TRACED_METHODS:
    setattr(Array, _name, _traced_method(_name))


def array(x: Any, dtype: Any = None) -> Array:
    """A new `pb.Array` holding a copy of `x` (as `np.array(x, dtype)`).

    Example:
      >>> w = pb.array([1.0, 2.0])
      >>> gs = pb.gradient(lambda: pb.sum(w ** 2), pb.Params([w]))
      >>> gs[w]
      array([2., 4.])
    """
    dtypes.refuse_unsupported(x, "the input of pb.array")
    out = np.array(x, dtype=dtype)
    dtypes.refuse_dtype(out.dtype, "pb.array's result")
    return out.view(Array)
