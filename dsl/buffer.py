"""`Buffer`: a mutable array that can be written inside a differentiated function.

A Buffer holds either a numpy array (plain Python use) or a traced value. Writing
`buf[index] = value` with a traced value (or into an already traced Buffer) records a
functional `array.update_slice`: the Buffer's value becomes a new traced array, so
derivatives flow through the writes. `copy(buf)` freezes it and hands the array out;
a Buffer is not an array, so array operations on it raise `TypeError`.
"""

from __future__ import annotations

from typing import Any, NoReturn

import numpy as np

from pullback.compiler.dialects import array as ad
from pullback.dsl import core, dtypes
from pullback.dsl.errors import shape_error
from pullback.dsl.indexing import window_entry
from pullback.dsl.trace import Trace, current_trace
from pullback.dsl.tracer import Tracer


def not_an_array(what: str) -> TypeError:
    """The error for using a Buffer as an array."""
    return TypeError(
        f"a pb.Buffer is not an array: {what} is not defined on it. Call pb.copy(buf) "
        "(or buf.copy()) to get the array once it is written")


class Buffer:
    """A mutable array for code that fills an array piece by piece.

    `Buffer(xs, *shape)` has the element type of `xs` and the given shape (`Buffer(xs)`:
    the shape of `xs`), and starts filled with zeros. Write and read it with numpy
    indexing (ints, slices, `...`); `pb.copy(buf)` returns the array and freezes the
    Buffer, after which writes raise `ValueError`.
    """

    def __init__(self, xs: Any, *shape: Any):
        if not isinstance(xs, Tracer | np.ndarray):
            raise TypeError(
                f"pb.Buffer(xs, *shape) takes an array xs for the element type, got "
                f"{type(xs).__name__}; write np.array(...) for a list")
        dtypes.refuse_dtype(xs.dtype, "the element-type array xs of pb.Buffer(xs, ...)")
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        dims = tuple(xs.shape) if not shape else tuple(_dim(d) for d in shape)
        self.shape: tuple[int, ...] = dims
        self._frozen = False
        self._written = False
        self._value: np.ndarray | Tracer
        if isinstance(xs, Tracer):
            self._value = xs.trace.full(0, dims, xs.dtype)
        else:
            self._value = np.zeros(dims, dtype=xs.dtype)

    # -- facts -----------------------------------------------------------------------

    @property
    def dtype(self) -> np.dtype:
        return self._value.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def frozen(self) -> bool:
        """Whether `copy` has been called: the Buffer is read-only from then on."""
        return self._frozen

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d Buffer")
        return self.shape[0]

    def __repr__(self) -> str:
        state = "frozen, " if self._frozen else ""
        return f"Buffer({state}shape={self.shape}, dtype={self.dtype})"

    # -- reading and writing ---------------------------------------------------------

    def __getitem__(self, index: Any) -> Any:
        out = self._value[index]
        return out.copy() if isinstance(out, np.ndarray) else out

    def __setitem__(self, index: Any, value: Any) -> None:
        if self._frozen:
            raise ValueError(
                "this pb.Buffer was frozen by pb.copy(buf): it cannot be written any more; "
                "make a new Buffer to write again")
        trace = self._trace_for(value)
        if trace is None:
            self._value[index] = value
        else:
            self._value = write_slice(trace, self._traced(trace), index, value)
        self._written = True

    def copy(self) -> Any:
        """The contents as an array (traced while tracing); the Buffer is frozen."""
        self._frozen = True
        return self._value

    def _trace_for(self, value: Any) -> Trace | None:
        """The trace a write must be recorded in, or None for a plain numpy write."""
        if isinstance(self._value, Tracer):
            return self._value.trace
        if isinstance(value, Tracer):
            return value.trace
        trace = current_trace()
        if trace is not None and isinstance(value, np.ndarray) and trace.is_param(value):
            return trace
        return None

    def _traced(self, trace: Trace) -> Tracer:
        """The value as a tracer of `trace` (a numpy value becomes an input of the trace)."""
        value = self._value
        if isinstance(value, Tracer):
            return value
        dt = dtypes.canonical(value.dtype)
        if not self._written:
            return trace.full(0, self.shape, dt)
        return core.lift(trace, value, dt)

    # -- not an array ----------------------------------------------------------------

    def _not_an_array(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise not_an_array("arithmetic")

    def __array__(self, dtype: Any = None, copy: Any = None) -> NoReturn:
        raise not_an_array("conversion to a numpy array")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> NoReturn:
        raise not_an_array(f"numpy.{ufunc.__name__}")

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> NoReturn:
        raise not_an_array(f"numpy.{func.__name__}")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _not_an_array
    __truediv__ = __rtruediv__ = __pow__ = __rpow__ = __matmul__ = __rmatmul__ = _not_an_array
    __neg__ = __abs__ = __lt__ = __le__ = __gt__ = __ge__ = _not_an_array


def copy(x: Any) -> Any:
    """The array of a Buffer, which freezes it; for an array, a copy (as numpy's `np.copy`)."""
    if isinstance(x, Buffer):
        return x.copy()
    if isinstance(x, Tracer):
        return x
    return np.copy(x)


def _dim(d: Any) -> int:
    if isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 0:
        raise TypeError(f"pb.Buffer dimensions must be non-negative ints, got {d!r}")
    return int(d)


def _window(index: Any, shape: tuple[int, ...]) -> tuple[list[int], list[int], list[int],
                                                           tuple[int, ...]]:
    """start, stride and size of the `array.slice` window `index` selects, and its shape
    as numpy gives it (integer-indexed dimensions dropped)."""
    entries = list(index) if isinstance(index, tuple) else [index]
    ellipsis = [i for i, e in enumerate(entries) if e is Ellipsis]
    if len(ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if ellipsis:
        i = ellipsis[0]
        entries[i:i + 1] = [slice(None)] * (len(shape) - len(entries) + 1)
    if len(entries) > len(shape):
        raise IndexError(
            f"too many indices for a Buffer: it is {len(shape)}-dimensional, but "
            f"{len(entries)} were indexed")
    entries += [slice(None)] * (len(shape) - len(entries))
    start, stride, size, kept = [], [], [], []
    for dim, (e, n) in enumerate(zip(entries, shape)):
        window = window_entry(e, n, dim)
        if window is None:
            raise IndexError(
                f"unsupported index {e!r} for writing a traced Buffer: write with ints, "
                "slices and ... (one position or window at a time)")
        lo, step, m, keeps = window
        start.append(lo)
        stride.append(step)
        size.append(m)
        if keeps:
            kept.append(m)
    return start, stride, size, tuple(kept)


def write_slice(trace: Trace, base: Tracer, index: Any, value: Any) -> Tracer:
    """`base` with the window `index` replaced by `value` (broadcast), as a new tracer."""
    start, stride, size, kept = _window(index, base.shape)
    if 0 in size:
        return base
    v = core.lift(trace, value, base.dtype)
    if ad.broadcast_shapes(v.shape, kept) != kept:
        raise shape_error(
            f"could not broadcast a value of shape {v.shape} into the window of shape "
            f"{kept} it is written to")
    v = core.reshape(core.broadcast_to(v, kept), tuple(size))
    return trace.emit(ad.UpdateSliceOp(base.value, v.value, start, stride))
