"""The position of one element inside a fused kernel: a multi-index or a flat offset.

Elementwise ops pass an index through unchanged; loads want a flat offset, and shape
ops (broadcast, transpose, slice, take) want one index per dimension. An `Index`
holds whichever form it was made in and converts on demand, so a chain of
elementwise ops and reshapes over a flat loop never divides, and a loop nest over a
broadcast never multiplies more than once per load.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects import arith
from xdsl.ir import SSAValue

from pullback.compiler.conversion.kernel_writer import KernelWriter, size_of


@dataclass(frozen=True)
class Index:
    """An element position in an array of `shape`: `multi` or `flat` is set."""

    shape: tuple[int, ...]
    multi: tuple[SSAValue, ...] | None = None
    flat: SSAValue | None = None

    def key(self) -> tuple[object, ...]:
        """A hashable identity used to memoize emitted element values."""
        if self.multi is not None:
            return ("m", self.shape, *(id(v) for v in self.multi))
        return ("f", self.shape, id(self.flat))


def to_flat(w: KernelWriter, idx: Index) -> SSAValue:
    """The row-major offset of `idx`."""
    if idx.flat is not None:
        return idx.flat
    assert idx.multi is not None
    offset: SSAValue | None = None
    stride = 1
    for i, d in reversed(list(zip(idx.multi, idx.shape, strict=True))):
        if d != 1:
            offset = w.add_index(offset, w.mul_index(i, stride))
        stride *= d
    return offset if offset is not None else w.index(0)


def to_multi(w: KernelWriter, idx: Index) -> tuple[SSAValue, ...]:
    """One index per dimension of `idx.shape`."""
    if idx.multi is not None:
        return idx.multi
    assert idx.flat is not None
    out: list[SSAValue] = []
    for k, d in enumerate(idx.shape):
        if d == 1:
            out.append(w.index(0))
            continue
        stride = size_of(idx.shape[k + 1:])
        v = idx.flat
        if stride != 1:
            v = w.add(arith.DivUIOp(v, w.index(stride)))
        if size_of(idx.shape[:k]) > 1:
            v = w.add(arith.RemUIOp(v, w.index(d)))
        out.append(v)
    return tuple(out)


def reshaped(w: KernelWriter, idx: Index, shape: tuple[int, ...]) -> Index:
    """The same element seen through a row-major reshape to `shape`."""
    if idx.multi is not None:
        kept = [(i, d) for i, d in zip(idx.multi, idx.shape, strict=True) if d != 1]
        if [d for _, d in kept] == [d for d in shape if d != 1]:
            it = iter(kept)
            multi = tuple(w.index(0) if d == 1 else next(it)[0] for d in shape)
            return Index(shape, multi=multi)
    return Index(shape, flat=to_flat(w, idx))
