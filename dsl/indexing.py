"""numpy indexing of traced arrays: ints, slices with steps, None, Ellipsis, integer arrays.

Basic indices (ints, slices, None, ...) become one `array.slice` (strides may be
negative) and a final `array.reshape` that drops integer-indexed dimensions and
inserts new axes. Integer arrays (numpy arrays, lists, traced integers) follow numpy's
advanced indexing: with any of them present, plain ints count as 0-d index arrays too;
all index arrays broadcast to one shape B. One index array is an `array.take` on its
axis. Several are combined into one flat position into their dimensions, moved to the
front and merged, so that one `array.take` gathers them. B takes the place of the
indexed dimensions when they are adjacent in the index, and goes first when a slice,
None or Ellipsis separates them, as in numpy.
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

Index = np.ndarray | Tracer
"""An advanced index: an integer numpy array or a traced integer array."""

_BLOCK = ("B", 0)
"""Where the broadcast block of advanced-index dimensions goes in a layout."""


def _as_index_array(entry: object) -> Index:
    if isinstance(entry, Tracer):
        if entry.dtype == np.bool_:
            raise IndexError(_BOOL_MASK)
        if entry.dtype.kind != "i":
            raise IndexError(f"arrays used as indices must be integers, not {entry.dtype}")
        return entry
    arr = np.asarray(entry)
    if arr.dtype == np.bool_:
        raise IndexError(_BOOL_MASK)
    if arr.dtype.kind not in "iu" and not (arr.size == 0 and isinstance(entry, list)):
        raise IndexError(f"arrays used as indices must be integers, not {arr.dtype}")
    return arr.astype(np.int64)


def _is_int(e: object) -> bool:
    return isinstance(e, int | np.integer) and not isinstance(e, bool)


def _entries(index: object, ndim: int) -> tuple[list[object], bool]:
    """The index as one entry per dimension or new axis (Ellipsis expanded), and whether
    its advanced entries (arrays, and ints when there are arrays) are adjacent."""
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
    arrays = any(isinstance(e, np.ndarray | Tracer) for e in entries)
    positions = [k for k, e in enumerate(entries)
                 if isinstance(e, np.ndarray | Tracer) or (arrays and _is_int(e))]
    adjacent = not positions or positions[-1] - positions[0] == len(positions) - 1
    ellipsis = [k for k, e in enumerate(entries) if e is Ellipsis]
    if ellipsis:
        k = ellipsis[0]
        entries[k:k + 1] = [slice(None)] * (ndim - consuming)
    else:
        entries += [slice(None)] * (ndim - consuming)
    return entries, adjacent


def window_entry(e: object, n: int, dim: int) -> tuple[int, int, int, bool] | None:
    """(start, stride, size, keeps its dimension) of an int or slice index on a dimension
    of size `n`, as `array.slice` takes them; None for any other kind of index."""
    if isinstance(e, slice):
        lo, hi, step = e.indices(n)
        m = len(range(lo, hi, step))
        return (lo if m else 0), step, m, True
    if _is_int(e):
        i = int(e)  # type: ignore[call-overload]
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of bounds for axis {dim} with size {n}")
        return i % n, 1, 1, False
    return None


def getitem(x: Tracer, index: object) -> Tracer:
    """`x[index]` with numpy semantics."""
    entries, adjacent = _entries(index, x.ndim)
    has_arrays = any(isinstance(e, np.ndarray | Tracer) for e in entries)
    start, stride, size = [], [], []
    advanced: list[tuple[int, Index]] = []  # (dimension of the windowed array, index)
    layout: list[tuple[str, int]] = []  # in index order: ("new", 1), ("dim", size), ("B", 0)
    dim = 0
    for e in entries:
        if e is None:
            layout.append(("new", 1))
            continue
        n = x.shape[dim]
        if isinstance(e, np.ndarray | Tracer) or (has_arrays and _is_int(e)):
            idx = _checked(e, n, dim)
            advanced.append((len(start), idx))
            window = (0, 1, n, True)
            if _BLOCK not in layout:
                layout.append(_BLOCK)
        else:
            window = window_entry(e, n, dim)
            if window is None:
                raise IndexError(
                    f"unsupported index {e!r} of type {type(e).__name__}: pullback indexes "
                    "with ints, slices, None, ... and integer arrays")
            if window[3]:
                layout.append(("dim", window[2]))
        start.append(window[0])
        stride.append(window[1])
        size.append(window[2])
        dim += 1
    out = x
    if tuple(size) != x.shape or any(s != 0 for s in start) or any(s != 1 for s in stride):
        out = x.trace.reuse((ad.SliceOp.name, x.value, tuple(start), tuple(stride),
                             tuple(size)),
                            lambda: ad.SliceOp(x.value, start, stride, size))
    if not advanced:
        return core.reshape(out, tuple(n for _, n in layout))
    return _gather(out, advanced, layout, adjacent)


def _checked(e: object, n: int, dim: int) -> Index:
    """An advanced index entry as an index array, with constant positions checked."""
    if isinstance(e, Tracer):
        return e
    arr = np.asarray(e, dtype=np.int64)
    for v in (arr.min(initial=0), arr.max(initial=0)):
        if not -n <= v < n:
            raise IndexError(f"index {v} is out of bounds for axis {dim} with size {n}")
    if n == 0 and arr.size:
        raise IndexError(f"index 0 is out of bounds for axis {dim} with size 0")
    return arr


def _broadcast_shape(indices: list[Index]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*(tuple(i.shape) for i in indices)))
    except ValueError:
        shapes = " ".join(str(tuple(i.shape)) for i in indices)
        raise IndexError("shape mismatch: indexing arrays could not be broadcast together "
                         f"with shapes {shapes}") from None


def _gather(y: Tracer, advanced: list[tuple[int, Index]], layout: list[tuple[str, int]],
            adjacent: bool) -> Tracer:
    """Gather `y` (one dimension per consuming index entry) at the advanced indices, and
    lay the result out as numpy does: `layout` lists the output dimensions in index
    order, with `_BLOCK` where the broadcast index block goes if the advanced entries
    are adjacent (otherwise it goes first)."""
    trace = y.trace
    dims = [d for d, _ in advanced]
    indices = [i for _, i in advanced]
    block = _broadcast_shape(indices)
    if len(advanced) == 1:
        idx = core.lift(trace, indices[0], np.dtype(np.int64))
        out = trace.emit(ad.TakeOp(y.value, idx.value, dims[0]))
        before = dims[0]
    else:
        rest = [d for d in range(y.ndim) if d not in dims]
        if dims + rest != list(range(y.ndim)):
            y = trace.emit(ad.TransposeOp(y.value, dims + rest))
        sizes = [y.shape[k] for k in range(len(dims))]
        flat = core.reshape(y, (int(np.prod(sizes, dtype=np.int64)), *y.shape[len(dims):]))
        position = _flat_position(trace, indices, sizes, block)
        out = trace.emit(ad.TakeOp(flat.value, position.value, 0))
        before = 0
    # `out` has `before` sliced dimensions, then the block, then the other sliced ones.
    order = layout if adjacent else [_BLOCK, *(d for d in layout if d != _BLOCK)]
    ahead = sum(1 for kind, _ in order[:order.index(_BLOCK)] if kind == "dim")
    if ahead != before:
        nb = len(block)
        others = [*range(before), *range(before + nb, out.ndim)]
        perm = [*others[:ahead], *range(before, before + nb), *others[ahead:]]
        out = trace.emit(ad.TransposeOp(out.value, perm))
    final: list[int] = []
    for entry in order:
        final.extend(block if entry == _BLOCK else [entry[1]])
    return core.reshape(out, tuple(final))


def _flat_position(trace: object, indices: list[Index], sizes: list[int],
                   block: tuple[int, ...]) -> Tracer:
    """The row-major position into dimensions of `sizes` of the broadcast `indices`
    (negative indices counted from the end), as an int64 array of shape `block`."""
    if all(isinstance(i, np.ndarray) for i in indices):
        total = np.zeros(block, dtype=np.int64)
        for i, n in zip(indices, sizes, strict=True):
            total = total * n + np.where(i < 0, i + n, i)
        return core.lift(trace, np.ascontiguousarray(total))  # type: ignore[arg-type]
    position: object = None
    for i, n in zip(indices, sizes, strict=True):
        if isinstance(i, np.ndarray):
            wrapped: object = np.asarray(np.where(i < 0, i + n, i))
        else:
            wrapped = core.select(core.compare("lt", i, 0),
                                  core.elementwise(ad.AddOp, [i, n], "index"), i)
        if position is None:
            position = wrapped
        elif isinstance(position, np.ndarray) and isinstance(wrapped, np.ndarray):
            position = np.asarray(position * n + wrapped)
        else:
            scaled = core.elementwise(ad.MulOp, [position, n], "index")
            position = core.elementwise(ad.AddOp, [scaled, wrapped], "index")
    assert isinstance(position, Tracer)
    return core.broadcast_to(position, block)
