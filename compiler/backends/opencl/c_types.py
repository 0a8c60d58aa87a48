"""Kernel-level types and constants written as OpenCL C.

Values use signed C types (`long` for `index` and `i64`, `bool` for `i1`); buffers
of masks are `uchar`, like numpy's `bool`. Unsigned ops cast to the unsigned twin.
"""

from __future__ import annotations

import math

import numpy as np
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    IndexType,
    IntegerType,
    MemRefType,
)
from xdsl.ir import Attribute

_SIGNED = {1: "bool", 8: "char", 16: "short", 32: "int", 64: "long"}
_UNSIGNED = {1: "bool", 8: "uchar", 16: "ushort", 32: "uint", 64: "ulong"}


def _width(t: Attribute) -> int:
    if isinstance(t, IndexType):
        return 64
    if isinstance(t, IntegerType):
        return t.width.data
    raise NotImplementedError(f"type {t} has no OpenCL C equivalent (f64, f32, index, iN)")


def c_type(t: Attribute) -> str:
    """The C type of a scalar value of type `t`."""
    if isinstance(t, Float64Type):
        return "double"
    if isinstance(t, Float32Type):
        return "float"
    width = _width(t)
    if width not in _SIGNED:
        raise NotImplementedError(f"integer type {t} has no OpenCL C equivalent")
    return _SIGNED[width]


def unsigned_type(t: Attribute) -> str:
    """The unsigned C twin of an integer type."""
    return _UNSIGNED[_width(t)]


def int_width(t: Attribute) -> int:
    return _width(t)


def buffer_element_type(t: MemRefType) -> str:
    """The C element type of a buffer: masks and bytes are `uchar`."""
    el = t.element_type
    if isinstance(el, IntegerType) and el.width.data in (1, 8):
        return "uchar"
    return c_type(el)


def float_literal(value: float, t: Attribute) -> str:
    """An exact C literal of a float constant."""
    single = isinstance(t, Float32Type)
    if math.isnan(value):
        return "(float)NAN" if single else "(double)NAN"
    if math.isinf(value):
        sign = "-" if value < 0 else ""
        return f"({sign}(float)INFINITY)" if single else f"({sign}(double)INFINITY)"
    if single:
        exact = float(np.float32(value)) == value
        text = repr(value) if exact else float.hex(value)
        if "e" not in text and "." not in text and "x" not in text:
            text += ".0"
        return f"{text}f" if exact else f"((float){text})"
    text = repr(value)
    return text if any(c in text for c in ".e") else text + ".0"


def int_literal(value: int, t: Attribute) -> str:
    """A C literal of an integer constant of type `t`, wrapped to its width."""
    width = _width(t)
    if width == 1:
        return "true" if value & 1 else "false"
    value &= (1 << width) - 1
    if value >= 1 << (width - 1):
        value -= 1 << width
    if width == 64:
        if value == -(2**63):
            return "LONG_MIN"
        return f"{value}L"
    return f"(({_SIGNED[width]}){value})"
