"""Errors raised while tracing, pointing at the user's own line of code."""

from __future__ import annotations

import linecache

from pullback.dsl.locations import user_frame


def user_location() -> str:
    """`file:line: source` of the innermost frame outside pullback and numpy."""
    frame = user_frame()
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
