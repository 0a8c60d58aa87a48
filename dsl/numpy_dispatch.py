"""numpy spellings on traced arrays: `np.tanh(t)`, `np.sum(t)` and friends.

numpy calls `Tracer.__array_ufunc__` / `__array_function__`; these tables map the
supported numpy functions to DSL functions and reject everything else by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pullback.dsl import ops

UFUNCS: dict[str, Callable[..., Any]] = {
    "add": ops.add, "subtract": ops.subtract, "multiply": ops.multiply,
    "divide": ops.divide, "true_divide": ops.divide, "power": ops.power,
    "negative": ops.negative, "absolute": ops.abs, "sign": ops.sign, "square": ops.square,
    "exp": ops.exp, "log": ops.log, "log1p": ops.log1p, "expm1": ops.expm1,
    "sqrt": ops.sqrt, "sin": ops.sin, "cos": ops.cos, "tan": ops.tan, "tanh": ops.tanh,
    "sinh": ops.sinh, "cosh": ops.cosh, "arcsin": ops.arcsin, "arccos": ops.arccos,
    "arctan": ops.arctan, "arctan2": ops.arctan2, "maximum": ops.maximum,
    "minimum": ops.minimum, "less": ops.less, "less_equal": ops.less_equal,
    "greater": ops.greater, "greater_equal": ops.greater_equal, "equal": ops.equal,
    "not_equal": ops.not_equal, "logical_and": ops.logical_and,
    "logical_or": ops.logical_or, "logical_not": ops.logical_not, "matmul": ops.matmul,
}

FUNCTIONS: dict[Callable[..., Any], Callable[..., Any]] = {
    np.sum: ops.sum, np.prod: ops.prod, np.max: ops.max, np.amax: ops.max,
    np.min: ops.min, np.amin: ops.min, np.mean: ops.mean, np.where: ops.where,
    np.dot: ops.dot, np.transpose: ops.transpose, np.reshape: ops.reshape,
    np.broadcast_to: ops.broadcast_to, np.concatenate: ops.concatenate,
    np.stack: ops.stack, np.cumsum: ops.cumsum, np.clip: ops.clip, np.ravel: ops.ravel,
    np.squeeze: ops.squeeze, np.expand_dims: ops.expand_dims,
    np.shape: lambda x: x.shape, np.ndim: lambda x: x.ndim, np.size: lambda x: x.size,
    np.copyto: lambda dst, src, casting="same_kind", where=True: _copyto(dst, src, where),
}


def _copyto(dst: Any, src: Any, where: Any) -> None:
    """`np.copyto(dst, src)` with a traced `src` or `dst`: an in-place write of `dst` (a
    traced array, or a numpy array the function closes over), written back when the
    compiled function returns."""
    from pullback.dsl import core
    from pullback.dsl.tracer import Tracer

    if where is not True:
        raise TypeError("numpy.copyto on traced arrays does not take where=; write "
                        "np.copyto(dst, pb.where(mask, src, dst)) instead")
    trace = (src if isinstance(src, Tracer) else dst).trace
    if not isinstance(dst, Tracer | np.ndarray):
        raise TypeError(f"numpy.copyto needs an array to write into, got {type(dst).__name__}")
    target = core.lift(trace, dst)
    value = core.lift(trace, src, target.dtype)
    trace.write(target, core.broadcast_to(value, target.shape))


def _unsupported(name: str) -> TypeError:
    return TypeError(
        f"numpy.{name} is not supported on traced arrays by pullback. Supported ufuncs: "
        f"{', '.join(sorted(UFUNCS))}; supported functions: "
        f"{', '.join(sorted({f.__name__ for f in FUNCTIONS}))}"
    )


def array_ufunc(ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    fn = UFUNCS.get(ufunc.__name__)
    if fn is None:
        raise _unsupported(ufunc.__name__)
    if method != "__call__":
        raise _unsupported(f"{ufunc.__name__}.{method}")
    if kwargs:
        raise TypeError(
            f"numpy.{ufunc.__name__} on traced arrays does not take the keyword arguments "
            f"{sorted(kwargs)} (traced arrays are immutable: no out=, where=)")
    return fn(*inputs)


def array_function(func: Any, args: tuple, kwargs: dict) -> Any:
    fn = FUNCTIONS.get(func)
    if fn is None:
        raise _unsupported(getattr(func, "__name__", str(func)))
    return fn(*args, **kwargs)
