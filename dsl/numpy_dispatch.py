"""numpy spellings on traced arrays: `np.tanh(t)`, `np.sum(t)` and friends.

numpy calls `Tracer.__array_ufunc__` / `__array_function__`; these tables map the
supported numpy functions to DSL functions and reject everything else by name. Every
DSL function named like a numpy ufunc or function is dispatched from it (derived from
`ops.__all__`), so a new DSL function needs no entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pullback.dsl import ops

# Names of numpy functions that share a DSL function's name but are not dispatched to it:
# numpy's `astype` takes `copy=` and `device=`, which traced arrays have no use for.
_NOT_DISPATCHED = frozenset({"astype"})


def _same_named(ufuncs: bool) -> dict[str, Any]:
    """numpy's object for each DSL function whose name numpy also defines: its ufuncs
    (`ufuncs=True`) or its other functions."""
    found: dict[str, Any] = {}
    for name in ops.__all__:
        np_obj = getattr(np, name, None)
        if (name not in _NOT_DISPATCHED and callable(np_obj)
                and isinstance(np_obj, np.ufunc) == ufuncs):
            found[name] = np_obj
    return found


UFUNCS: dict[str, Callable[..., Any]] = {
    # numpy calls a ufunc's implementation by the ufunc's own name (`np.abs` is `absolute`)
    **{np_fn.__name__: getattr(ops, name) for name, np_fn in _same_named(ufuncs=True).items()},
    "true_divide": ops.divide,  # numpy's name of `divide` before numpy 2
}

FUNCTIONS: dict[Callable[..., Any], Callable[..., Any]] = {
    **{np_fn: getattr(ops, name) for name, np_fn in _same_named(ufuncs=False).items()},
    np.amax: ops.max, np.amin: ops.min,
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
