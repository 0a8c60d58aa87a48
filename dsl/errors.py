"""Errors raised while tracing, pointing at the user's own line of code."""

from __future__ import annotations

import linecache
import os
import sys

_PACKAGE_ROOTS = tuple(
    os.path.dirname(os.path.abspath(p)) + os.sep
    for p in (__file__, os.path.join(os.path.dirname(__file__), "..", "runtime", "x"),
              os.path.join(os.path.dirname(__file__), "..", "compiler", "x"))
)
_SKIP = (os.sep + "numpy" + os.sep, "<__array_function__", "contextlib.py")


def _is_internal(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path.startswith(_PACKAGE_ROOTS) or any(s in filename for s in _SKIP)


def user_location() -> str:
    """`file:line: source` of the innermost frame outside pullback and numpy."""
    frame = sys._getframe(1)
    while frame is not None and _is_internal(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return "<unknown location>"
    filename, lineno = frame.f_code.co_filename, frame.f_lineno
    source = linecache.getline(filename, lineno).strip()
    return f"{filename}:{lineno}" + (f": `{source}`" if source else "")


class TracerError(TypeError):
    """A traced value was used in a way that needs a concrete value."""


class TracerBoolConversionError(TracerError):
    """`if`, `while`, `and`, `or` or `bool()` on a traced array."""


class ShapeError(ValueError):
    """Operand shapes do not fit the operation."""


class ForeignTracerError(ValueError):
    """A traced value used in a trace it does not belong to: it escaped the function it
    was traced in, or belongs to an enclosing trace."""


def bool_conversion_error() -> TracerBoolConversionError:
    return TracerBoolConversionError(
        f"data-dependent control flow on a traced array at {user_location()}\n"
        "pullback traces your function once with static shapes, so Python `if`, `while`, "
        "`and`/`or` and bool() cannot depend on array values. Select elementwise with "
        "pb.where(condition, value_if_true, value_if_false) instead."
    )


def concretization_error(what: str) -> TracerError:
    return TracerError(
        f"{what} of a traced array at {user_location()}: its value is not known while "
        "pullback traces the function. Keep the computation in pullback/numpy array "
        "operations (pb.where for choices), or pass the value as a non-array argument."
    )


def shape_error(message: str) -> ShapeError:
    return ShapeError(f"{message} at {user_location()}")
