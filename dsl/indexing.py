"""numpy indexing of traced arrays: ints, slices with steps, None, Ellipsis, one int array.

Basic indices become one `array.slice` (strides may be negative); an integer array
(or a traced integer) becomes `array.take`; a final `array.reshape` drops indexed
dimensions and inserts new axes.
"""

from __future__ import annotations

import numpy as np

from pullback.compiler.dialects import array as ad
from pullback.dsl import core
from pullback.dsl.tracer import Tracer

_BOOL_MASK = (
    "indexing with a boolean mask gives a shape that depends on the data, which a "
    "static-shape trace cannot represent; use pb.where(mask, x, 0) instead"
)


def _as_index_array(entry: object) -> object:
    if isinstance(entry, Tracer):
        if entry.dtype == np.bool_:
            raise IndexError(_BOOL_MASK)
        if entry.dtype.kind != "i":
            raise IndexError(f"arrays used as indices must be integers, not {entry.dtype}")
        return entry
    arr = np.asarray(entry) if isinstance(entry, list) else entry
    assert isinstance(arr, np.ndarray)
    if arr.dtype == np.bool_:
        raise IndexError(_BOOL_MASK)
    if arr.dtype.kind not in "iu":
        raise IndexError(f"arrays used as indices must be integers, not {arr.dtype}")
    return arr if isinstance(entry, np.ndarray) else arr.astype(np.int64)


def _expand(index: object, ndim: int) -> list[object]:
    entries = list(index) if isinstance(index, tuple) else [index]
    entries = [_as_index_array(e) if isinstance(e, list | np.ndarray | Tracer) else e
               for e in entries]
    if sum(e is Ellipsis for e in entries) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    consuming = sum(e is not None and e is not Ellipsis for e in entries)
    if consuming > ndim:
        raise IndexError(
            f"too many indices for array: array is {ndim}-dimensional, but {consuming} "
            "were indexed")
    if Ellipsis in [e for e in entries if not isinstance(e, np.ndarray | Tracer)]:
        i = next(k for k, e in enumerate(entries) if e is Ellipsis)
        entries[i:i + 1] = [slice(None)] * (ndim - consuming)
    else:
        entries += [slice(None)] * (ndim - consuming)
    return entries


def window_entry(e: object, n: int, dim: int) -> tuple[int, int, int, bool] | None:
    """(start, stride, size, keeps its dimension) of an int or slice index on a dimension
    of size `n`, as `array.slice` takes them; None for any other kind of index."""
    if isinstance(e, slice):
        lo, hi, step = e.indices(n)
        m = len(range(lo, hi, step))
        return (lo if m else 0), step, m, True
    if isinstance(e, int | np.integer) and not isinstance(e, bool):
        i = int(e)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of bounds for axis {dim} with size {n}")
        return i % n, 1, 1, False
    return None


def getitem(x: Tracer, index: object) -> Tracer:
    """`x[index]` with numpy semantics."""
    entries = _expand(index, x.ndim)
    start, stride, size, out_shape = [], [], [], []
    advanced: list[tuple[int, object]] = []
    dim = 0
    for e in entries:
        if e is None:
            out_shape.append(1)
            continue
        n = x.shape[dim]
        if isinstance(e, np.ndarray | Tracer):
            advanced.append((dim, e))
            window = (0, 1, n, False)
            out_shape.extend(e.shape)
        else:
            window = window_entry(e, n, dim)
            if window is None:
                raise IndexError(
                    f"unsupported index {e!r} of type {type(e).__name__}: pullback indexes "
                    "with ints, slices, None, ... and one integer array")
            if window[3]:
                out_shape.append(window[2])
        start.append(window[0])
        stride.append(window[1])
        size.append(window[2])
        dim += 1
    if len(advanced) > 1:
        raise IndexError(
            "pullback supports one integer-array index per indexing expression; index one "
            "axis at a time, e.g. x[i][:, j]")
    out = x
    if tuple(size) != x.shape or any(s != 0 for s in start) or any(s != 1 for s in stride):
        out = x.trace.emit(ad.SliceOp(x.value, start, stride, size))
    if advanced:
        axis, idx = advanced[0]
        if isinstance(idx, np.ndarray):
            for v in (idx.min(initial=0), idx.max(initial=0)):
                if not -x.shape[axis] <= v < x.shape[axis]:
                    raise IndexError(
                        f"index {v} is out of bounds for axis {axis} with size {x.shape[axis]}")
        t = core.lift(x.trace, idx, np.dtype(np.int64))
        out = x.trace.emit(ad.TakeOp(out.value, t.value, axis))
        return core.reshape(out, tuple(out_shape))
    return core.reshape(out, tuple(out_shape))
