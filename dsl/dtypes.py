"""Element types: numpy dtypes, their IR types, and numpy's promotion rules."""

from __future__ import annotations

import sys

import numpy as np
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    IntegerType,
    TensorType,
    f32,
    f64,
    i1,
    i64,
)
from xdsl.ir import Attribute

from pullback.compiler.dialects.array import tensor_of

# The four element types the array dialect carries, lowest to highest kind.
SUPPORTED = (np.dtype(np.bool_), np.dtype(np.int64), np.dtype(np.float32), np.dtype(np.float64))

_TO_IR: dict[np.dtype, Attribute] = {
    np.dtype(np.bool_): i1,
    np.dtype(np.int64): i64,
    np.dtype(np.float32): f32,
    np.dtype(np.float64): f64,
}


ACCEPTED = ("float64, float32, integer and bool arrays (float16 is converted to float32, "
            "integers of other widths to int64), and Python numbers")
"""What every entry point accepts, for error messages."""


def canonical(dtype: np.dtype | type) -> np.dtype:
    """The supported dtype an input of `dtype` is traced as (ints widen, floats keep width)."""
    dt = np.dtype(dtype)
    if dt in _TO_IR:
        return dt
    if dt.kind in "iu":
        return np.dtype(np.int64)
    if dt.kind == "f" and dt.itemsize <= 4:
        return np.dtype(np.float32)
    if dt.kind == "f" and dt.itemsize == 8:
        return np.dtype(np.float64)
    raise TypeError(f"pullback does not support arrays of dtype {dt}; it accepts {ACCEPTED}")


def refuse_unsupported(value: object, what: str) -> None:
    """Raise TypeError when `value` (an array or number passed as `what`) cannot be used
    without losing information: complex numbers, masked arrays (the mask would be
    ignored), object, string, byte, void and time arrays, and floats wider than 64 bits."""
    masked = sys.modules.get("numpy.ma")  # not imported: no masked array exists
    if masked is not None and isinstance(value, masked.MaskedArray):
        raise TypeError(
            f"{what} is a masked array (np.ma.MaskedArray): pullback would ignore its mask. "
            f"Pass arr.filled(fill_value) or use pb.where with the mask; pullback accepts "
            f"{ACCEPTED}")
    if isinstance(value, complex | np.complexfloating):
        raise TypeError(f"{what} is the complex number {value!r}; pullback accepts {ACCEPTED}")
    if isinstance(value, np.ndarray | np.number):  # numpy strings are passed unchanged
        refuse_dtype(value.dtype, what, "an array" if isinstance(value, np.ndarray)
                     else "a numpy scalar")


def refuse_dtype(dtype: np.dtype, what: str, noun: str = "an array") -> None:
    """Raise TypeError unless arrays of `dtype` are accepted (see `refuse_unsupported`)."""
    dt = np.dtype(dtype)
    if dt.kind not in "biuf" or (dt.kind == "f" and dt.itemsize > 8):
        raise TypeError(f"{what} is {noun} of dtype {dt}; pullback accepts {ACCEPTED}")


def as_int64(arr: np.ndarray, what: str) -> np.ndarray:
    """An integer array `arr` as int64, refusing uint64 values int64 cannot hold."""
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise TypeError(f"{what} is a uint64 array with values above the int64 range "
                        "(pullback traces integer arrays as int64)")
    return np.asarray(arr, dtype=np.int64, order="C")


def to_ir(dtype: np.dtype) -> Attribute:
    """The IR element type of a supported numpy dtype."""
    return _TO_IR[np.dtype(dtype)]


def from_ir(element_type: Attribute) -> np.dtype:
    """The numpy dtype of an IR element type."""
    if isinstance(element_type, Float64Type):
        return np.dtype(np.float64)
    if isinstance(element_type, Float32Type):
        return np.dtype(np.float32)
    if isinstance(element_type, IntegerType):
        return np.dtype(np.bool_) if element_type.width.data == 1 else np.dtype(np.int64)
    raise TypeError(f"no numpy dtype for IR element type {element_type}")


def tensor_type(shape: tuple[int, ...], dtype: np.dtype) -> TensorType:
    """The builtin tensor type of an array of `shape` and `dtype`."""
    return tensor_of(to_ir(dtype), shape)


def is_float(dtype: np.dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def promote(a: np.dtype, b: np.dtype) -> np.dtype:
    """numpy's result dtype for two supported array dtypes."""
    return canonical(np.promote_types(a, b))


def promote_scalar(array_dtype: np.dtype, scalar: object) -> np.dtype:
    """numpy's result dtype for an array op with a Python scalar (weakly typed)."""
    if isinstance(scalar, bool | np.bool_):
        return array_dtype
    if isinstance(scalar, int | np.integer):
        return np.dtype(np.int64) if array_dtype == np.bool_ else array_dtype
    if isinstance(scalar, float | np.floating):
        return array_dtype if is_float(array_dtype) else np.dtype(np.float64)
    raise TypeError(f"unsupported scalar {scalar!r} of type {type(scalar).__name__}")


def float_of(dtype: np.dtype) -> np.dtype:
    """The float dtype an op such as `exp` or `/` gives for inputs of `dtype`."""
    return dtype if is_float(dtype) else np.dtype(np.float64)
