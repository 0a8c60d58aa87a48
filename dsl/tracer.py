"""Tracer: a traced array value with numpy's operators, methods and protocols."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import SSAValue

from pullback.dsl import dtypes
from pullback.dsl.errors import (
    bool_conversion_error,
    concretization_error,
    shape_error,
    user_location,
)

if TYPE_CHECKING:
    from pullback.dsl.trace import Trace


def _ops() -> Any:
    from pullback.dsl import ops

    return ops


class Tracer:
    """An array being traced: static shape and dtype, value known only at run time."""

    __slots__ = ("trace", "value", "shape", "dtype")
    __array_priority__ = 1000

    def __init__(self, trace: Trace, value: SSAValue):
        t = value.type
        assert isinstance(t, TensorType)
        self.trace = trace
        self.value = value
        self.shape: tuple[int, ...] = tuple(t.get_shape())
        self.dtype: np.dtype = dtypes.from_ir(t.element_type)

    # -- static facts -----------------------------------------------------------------

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d traced array")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"Tracer(shape={self.shape}, dtype={self.dtype})"

    __hash__ = object.__hash__

    # -- values that are not known while tracing ----------------------------------------

    def __bool__(self) -> bool:
        raise bool_conversion_error()

    def __float__(self) -> float:
        raise concretization_error("float()")

    def __int__(self) -> int:
        raise concretization_error("int()")

    def __index__(self) -> int:
        raise concretization_error("use as an index or size")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise concretization_error("conversion to a numpy array")

    def tolist(self) -> list:
        raise concretization_error("tolist()")

    def item(self) -> float:
        raise concretization_error("item()")

    def __setitem__(self, index: object, value: object) -> None:
        from pullback.dsl.buffer import write_slice

        self.trace.write(self, write_slice(self.trace, self, index, value))

    # -- in-place arithmetic: the array this tracer stands for changes, as in numpy --------

    def _in_place(self, new: Tracer) -> Tracer:
        if new.shape != self.shape:
            raise shape_error(f"in-place operation: the result of shape {new.shape} cannot "
                              f"be written into an array of shape {self.shape}")
        if new.dtype != self.dtype:
            if not np.can_cast(new.dtype, self.dtype, casting="same_kind"):
                raise TypeError(f"in-place operation: cannot cast the result of dtype "
                                f"{new.dtype} to the array's dtype {self.dtype} at "
                                f"{user_location()}")
            new = _ops().astype(new, self.dtype)
        self.trace.write(self, new)
        return self

    def __iadd__(self, o: object) -> Tracer:
        return self._in_place(_ops().add(self, o))

    def __isub__(self, o: object) -> Tracer:
        return self._in_place(_ops().subtract(self, o))

    def __imul__(self, o: object) -> Tracer:
        return self._in_place(_ops().multiply(self, o))

    def __itruediv__(self, o: object) -> Tracer:
        return self._in_place(_ops().divide(self, o))

    def __ipow__(self, o: object) -> Tracer:
        return self._in_place(_ops().power(self, o))

    # -- arithmetic ---------------------------------------------------------------------

    def __add__(self, o: object) -> Tracer:
        return _ops().add(self, o)

    def __radd__(self, o: object) -> Tracer:
        return _ops().add(o, self)

    def __sub__(self, o: object) -> Tracer:
        return _ops().subtract(self, o)

    def __rsub__(self, o: object) -> Tracer:
        return _ops().subtract(o, self)

    def __mul__(self, o: object) -> Tracer:
        return _ops().multiply(self, o)

    def __rmul__(self, o: object) -> Tracer:
        return _ops().multiply(o, self)

    def __truediv__(self, o: object) -> Tracer:
        return _ops().divide(self, o)

    def __rtruediv__(self, o: object) -> Tracer:
        return _ops().divide(o, self)

    def __pow__(self, o: object) -> Tracer:
        return _ops().power(self, o)

    def __rpow__(self, o: object) -> Tracer:
        return _ops().power(o, self)

    def __matmul__(self, o: object) -> Tracer:
        return _ops().matmul(self, o)

    def __rmatmul__(self, o: object) -> Tracer:
        return _ops().matmul(o, self)

    def __neg__(self) -> Tracer:
        return _ops().negative(self)

    def __pos__(self) -> Tracer:
        return Tracer(self.trace, self.value)

    def __abs__(self) -> Tracer:
        return _ops().abs(self)

    def __floordiv__(self, o: object) -> Tracer:
        raise TypeError("floor division (//) of traced arrays is not supported by pullback")

    __rfloordiv__ = __floordiv__

    def __mod__(self, o: object) -> Tracer:
        raise TypeError("the modulo operator (%) on traced arrays is not supported by pullback")

    __rmod__ = __mod__

    # -- comparisons and masks ----------------------------------------------------------

    def __lt__(self, o: object) -> Tracer:
        return _ops().less(self, o)

    def __le__(self, o: object) -> Tracer:
        return _ops().less_equal(self, o)

    def __gt__(self, o: object) -> Tracer:
        return _ops().greater(self, o)

    def __ge__(self, o: object) -> Tracer:
        return _ops().greater_equal(self, o)

    def __eq__(self, o: object) -> Tracer:  # type: ignore[override]
        return _ops().equal(self, o)

    def __ne__(self, o: object) -> Tracer:  # type: ignore[override]
        return _ops().not_equal(self, o)

    def __and__(self, o: object) -> Tracer:
        return _ops().logical_and(self, o)

    __rand__ = __and__

    def __or__(self, o: object) -> Tracer:
        return _ops().logical_or(self, o)

    __ror__ = __or__

    def __invert__(self) -> Tracer:
        return _ops().logical_not(self)

    # -- indexing and iteration ---------------------------------------------------------

    def __getitem__(self, index: object) -> Tracer:
        from pullback.dsl.indexing import getitem

        return getitem(self, index)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # -- methods ------------------------------------------------------------------------

    @property
    def T(self) -> Tracer:
        return _ops().transpose(self)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tracer:
        return _ops().sum(self, axis=axis, keepdims=keepdims)

    def prod(self, axis: Any = None, keepdims: bool = False) -> Tracer:
        return _ops().prod(self, axis=axis, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tracer:
        return _ops().max(self, axis=axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Tracer:
        return _ops().min(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tracer:
        return _ops().mean(self, axis=axis, keepdims=keepdims)

    def cumsum(self, axis: Any = None) -> Tracer:
        return _ops().cumsum(self, axis=axis)

    def reshape(self, *shape: Any) -> Tracer:
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        return _ops().reshape(self, shape)

    def transpose(self, *axes: Any) -> Tracer:
        if len(axes) == 1 and isinstance(axes[0], tuple | list):
            axes = tuple(axes[0])
        return _ops().transpose(self, axes or None)

    def astype(self, dtype: Any) -> Tracer:
        return _ops().astype(self, dtype)

    def ravel(self) -> Tracer:
        return _ops().ravel(self)

    flatten = ravel

    def squeeze(self, axis: Any = None) -> Tracer:
        return _ops().squeeze(self, axis)

    def dot(self, o: object) -> Tracer:
        return _ops().dot(self, o)

    def clip(self, a_min: Any = None, a_max: Any = None) -> Tracer:
        return _ops().clip(self, a_min, a_max)

    def copy(self) -> Tracer:
        return Tracer(self.trace, self.value)

    # -- numpy protocols ------------------------------------------------------------------

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        from pullback.dsl.numpy_dispatch import array_ufunc

        return array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        from pullback.dsl.numpy_dispatch import array_function

        return array_function(func, args, kwargs)
