"""`showgrad` and `hook`: watch or replace the gradient of one use of a value.

Both return their argument unchanged. Inside a differentiated trace they emit an
`ad.callback` op (see `pullback.compiler.dialects.ad`): the backward pass hands the
gradient of that use to a Python function at run time, with concrete arrays. Each
trace registers its functions in its own `CallbackTable`, passed to compiled code as
a hidden input, so cached code always calls the functions of the current call.
Outside a trace they do nothing. Forward mode passes tangents through unchanged.
"""

from __future__ import annotations

import ast
import linecache
import sys
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

import numpy as np
from xdsl.ir import Region

from pullback.compiler.dialects.ad import CallbackOp, HookOp, YieldOp
from pullback.compiler.dialects.callback_table import CallbackTable, HostFunction, register
from pullback.dsl import dtypes
from pullback.dsl.trace import Trace, current_trace
from pullback.dsl.tracer import Tracer

_TABLES: weakref.WeakKeyDictionary[Trace, tuple[CallbackTable, np.ndarray]] = (
    weakref.WeakKeyDictionary())


def showgrad(x: Any, name: str | None = None) -> Any:
    """`x`, printing `∂(NAME) = VALUE` when the gradient of this use of `x` is known.

    VALUE is a Python float for 0-d gradients and the numpy repr otherwise; it is
    `None` when this use receives no gradient. NAME defaults to the source text of
    the argument at the call site, else `x`. The gradient shown is that of this one
    use, not the total gradient of `x`.
    """
    if not _traced(x):
        return x
    label = name if name is not None else _argument_source(sys._getframe(1), "x")
    return _emit_callback(x, "showgrad", label, _printer(label))


def hook(fn: Callable[[Any], Any], x: Any, compiled: bool = False) -> Any:
    """`x`, whose gradient in the backward pass is replaced by `fn(gradient)`.

    `fn` runs at run time on a numpy array shaped like `x` (and may print or collect)
    and must return an array of the same shape and dtype. With `compiled=True`, `fn`
    is traced as DSL code into the backward pass instead: no call back into Python.
    A hook runs only where a gradient reaches this use.
    """
    if not callable(fn):
        raise TypeError(f"pb.hook needs a callable as its first argument, got {fn!r}")
    if not _traced(x):
        return x
    if compiled:
        return _compiled_hook(fn, x)
    shape = tuple(x.value.type.get_shape())
    dtype = np.dtype(_numpy_dtype(x))
    return _emit_callback(x, "hook", _hook_name(fn), _checked_hook(fn, shape, dtype))


# -- tracing -------------------------------------------------------------------------


def _traced(x: Any) -> bool:
    trace = current_trace()
    return trace is not None and isinstance(x, Tracer) and x.trace is trace


def _numpy_dtype(x: Tracer) -> np.dtype:
    return dtypes.from_ir(x.value.type.element_type)


def _emit_callback(x: Tracer, kind: str, label: str, fn: HostFunction) -> Tracer:
    trace = x.trace
    if _numpy_dtype(x).kind != "f":
        raise TypeError(f"pb.{kind} needs a floating-point array (a gradient), "
                        f"got {_numpy_dtype(x)}")
    if trace not in _TABLES:
        table = CallbackTable()
        _TABLES[trace] = (table, register(table))
    table, token = _TABLES[trace]
    slot = table.add(fn, tuple(x.value.type.get_shape()))
    table_value = trace.hidden_input(token).value
    return trace.emit(CallbackOp(x.value, table_value, slot, kind, label))


def _compiled_hook(fn: Callable[[Any], Any], x: Tracer) -> Tracer:
    trace = x.trace
    shape = tuple(x.value.type.get_shape())
    with trace.region() as block:
        g = trace.region_input(block, shape, _numpy_dtype(x))
        out = fn(g)
        if not isinstance(out, Tracer) or out.trace is not trace:
            raise TypeError(f"hook {_hook_name(fn)} (compiled=True) must return a traced "
                            f"array computed from its argument, got {out!r}")
        if out.value.type != x.value.type:
            raise ValueError(f"hook {_hook_name(fn)} returned {out.value.type}, expected "
                             f"the gradient's type {x.value.type} (shape {shape})")
        block.add_op(YieldOp(out.value))
    region = Region()
    region.add_block(block)
    trace.key.append(("ad.yield",))
    return trace.emit(HookOp(x.value, region))


# -- host functions ------------------------------------------------------------------


def _format(value: np.ndarray | None) -> str:
    if value is None:
        return "None"
    return repr(float(value)) if value.ndim == 0 else repr(value)


def _printer(label: str) -> HostFunction:
    def show(value: np.ndarray | None) -> None:
        print(f"∂({label}) = {_format(value)}")
        return None

    return show


def _hook_name(fn: Callable[[Any], Any]) -> str:
    return getattr(fn, "__name__", None) or repr(fn)


def _checked_hook(fn: Callable[[Any], Any], shape: tuple[int, ...],
                  dtype: np.dtype) -> HostFunction:
    name = _hook_name(fn)

    def run(value: np.ndarray | None) -> np.ndarray | None:
        if value is None:
            return None
        out = fn(value)
        if isinstance(out, int | float) and not isinstance(out, bool):
            out = np.asarray(out, dtype)
        if not isinstance(out, np.ndarray | np.generic):
            raise TypeError(f"hook {name} must return an array of shape {shape} and dtype "
                            f"{dtype}, got {type(out).__name__}")
        arr = np.asarray(out)
        if arr.shape != shape or arr.dtype != dtype:
            raise ValueError(f"hook {name} returned an array of shape {arr.shape} and dtype "
                             f"{arr.dtype}; expected shape {shape} and dtype {dtype}")
        return arr

    return run


# -- the argument's source text --------------------------------------------------------


def _argument_source(frame: FrameType, default: str) -> str:
    """The source text of the first argument of the call `frame` is executing."""
    try:
        code = frame.f_code
        positions = list(code.co_positions())[frame.f_lasti // 2]
        first, last, start, end = positions
        if None in positions:
            return default
        lines = linecache.getlines(code.co_filename, frame.f_globals)[first - 1:last]
        if not lines:
            return default
        raw = [line.encode() for line in lines]
        raw[-1] = raw[-1][:end]
        raw[0] = raw[0][start:]
        text = b"".join(raw).decode()
        call = ast.parse("(" + text + "\n)", mode="eval").body
        if not isinstance(call, ast.Call) or not call.args:
            return default
        source = ast.get_source_segment("(" + text + "\n)", call.args[0])
        return " ".join(source.split()) if source else default
    except (SyntaxError, ValueError, IndexError, TypeError, UnicodeDecodeError):
        return default
