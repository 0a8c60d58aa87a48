"""Fused loop kernels: one loop nest over a domain, several stores and reductions.

The innermost body computes, at one element of the domain, every stored value and
every reduction source of the kernel through one `ElementEmitter`, so a value used
several times is computed once. Each reduction either is *carried*: its reduced
axes are the innermost loops, which reduce it and store it when they close; or is
*buffered*: its output is set to the identity first and each iteration combines into
it. Without index maps that need per-dimension indices, consecutive loops between
accumulator levels collapse into one flat loop.

Consecutive loops that may run in any order (no buffered reduction combines along
them) and between which no carried reduction starts are one `scf.parallel`, which
reduces the carried reductions active in it (`scf.reduce`); a loop along a buffered
reduction's axes is an `scf.for`, which carries them (`iter_args`).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.ir import SSAValue

from pullback.compiler.conversion.combiners import combine, identity, reduction_combiner
from pullback.compiler.conversion.element_emitter import ElementEmitter, needs_multi_index
from pullback.compiler.conversion.element_index import Index, reshaped, to_flat
from pullback.compiler.conversion.kernel_writer import size_of
from pullback.compiler.dialects import array as A
from pullback.compiler.transforms.fusion import Kernel, Reduction


@dataclass
class _Accumulation:
    """A reduction placed in the nest: reduced domain axes and, if carried, its band."""

    reduction: Reduction
    axes: frozenset[int]
    band: int | None = None


def _domain_axes(red: Reduction) -> frozenset[int]:
    """The reduced axes of `red`, counted among the source's non-unit dimensions."""
    shape = A.shape_of(red.source)
    position = {a: k for k, a in enumerate(i for i, d in enumerate(shape) if d != 1)}
    return frozenset(position[a] for a in red.axes if shape[a] != 1)


def _loop_order(rank: int, accs: list[_Accumulation]) -> list[int]:
    """Row-major order, unless a reduction over the last axis wants its axes innermost."""
    for acc in accs:
        if rank - 1 in acc.axes and acc.axes != frozenset(range(rank - len(acc.axes), rank)):
            return [*(a for a in range(rank) if a not in acc.axes), *sorted(acc.axes)]
    return list(range(rank))


class _FusedNest:
    """Emits one fused kernel into the emitter's writer."""

    def __init__(self, e: ElementEmitter, kernel: Kernel, outs: dict[SSAValue, SSAValue]):
        self.e, self.w, self.kernel, self.outs = e, e.w, kernel, outs
        domain = kernel.domain
        accs = [_Accumulation(r, _domain_axes(r)) for r in kernel.reductions]
        order = _loop_order(len(domain), accs)
        starts = [*kernel.stores, *(r.source for r in kernel.reductions)]
        multi = order != sorted(order) or any(
            needs_multi_index(v, e.buffers) for v in starts)
        cuts = {0, len(domain)}
        for acc in accs:
            cut = len(domain) - len(acc.axes)
            if set(order[cut:]) == acc.axes:
                acc.band = cut
                cuts.add(cut)
        self.buffered = [a for a in accs if a.band is None]
        multi = multi or bool(self.buffered)
        if multi:
            self.bands = [(a,) for a in order]
        else:
            points = sorted(cuts)
            self.bands = [tuple(order[i:j]) for i, j in zip(points, points[1:]) if j > i]
            for acc in accs:
                assert acc.band is not None
                acc.band = points.index(acc.band) if acc.band < len(domain) else len(self.bands)
        self.multi, self.order = multi, order
        self.carried = [a for a in accs if a.band is not None]
        self.groups = self._groups()
        self.ivs: list[SSAValue] = []

    def _groups(self) -> list[tuple[int, int, bool]]:
        """(first band, end band, parallel) of each loop op, outermost first."""
        starts = {a.band for a in self.carried}
        groups: list[tuple[int, int, bool]] = []
        for b, band in enumerate(self.bands):
            parallel = not any(set(band) & a.axes for a in self.buffered)
            if groups and parallel and groups[-1][2] and b not in starts:
                groups[-1] = (groups[-1][0], b + 1, True)
            else:
                groups.append((b, b + 1, parallel))
        return groups

    def emit(self) -> None:
        for acc in self.buffered:
            self._fill_identity(acc)
        self._nest(0, [])

    def _fill_identity(self, acc: _Accumulation) -> None:
        w, op = self.w, acc.reduction.op
        el = A.element_type_of(op.result)
        n = size_of(A.shape_of(op.result))
        (i,) = w.open_parallel([n])
        w.store(w.constant(identity(op, el), el), self.outs[op.result], i)
        w.close_parallel()

    def _nest(self, group: int, active: list[_Accumulation]) -> list[SSAValue]:
        """Open loop ops from `group` inward; returns what the nest contributes to each
        reduction of `active` (all its elements combined)."""
        w = self.w
        band = self.groups[group][0] if group < len(self.groups) else len(self.bands)
        starting = [a for a in self.carried if a.band == band]
        active = [*active, *starting]
        if group == len(self.groups):
            result = self._body(active)
        else:
            first, end, parallel = self.groups[group]
            sizes = [size_of([self.kernel.domain[a] for a in b]) for b in self.bands[first:end]]
            types = [A.element_type_of(a.reduction.op.result) for a in active]
            if parallel:
                self.ivs.extend(w.open_parallel(sizes, [
                    (reduction_combiner(a.reduction.op, t), t)
                    for a, t in zip(active, types, strict=True)]))
                result = list(w.close_parallel(self._nest(group + 1, active)))
            else:
                inits = [w.constant(identity(a.reduction.op, t), t)
                         for a, t in zip(active, types, strict=True)]
                iv, accs = w.open_loop(sizes[0], inits)
                self.ivs.append(iv)
                inner = self._nest(group + 1, active)
                result = list(w.close_loop([combine(w, a.reduction.op, acc, x)
                                            for a, acc, x in zip(active, accs, inner,
                                                                 strict=True)]))
            del self.ivs[first:]
        done = len(active) - len(starting)
        for acc, value in zip(starting, result[done:], strict=True):
            w.store(value, self.outs[acc.reduction.op.result], self._kept_offset(band))
        return result[:done]

    def _kept_offset(self, band: int) -> SSAValue:
        """Flat offset of the element of a reduction carried from `band` inward."""
        sizes = [size_of([self.kernel.domain[a] for a in b]) for b in self.bands[:band]]
        pairs = sorted(zip((b[0] for b in self.bands[:band]), sizes, self.ivs[:band]))
        return to_flat(self.w, Index(tuple(s for _, s, _ in pairs),
                                     multi=tuple(iv for _, _, iv in pairs)))

    def _point(self) -> Index:
        domain = self.kernel.domain
        if not self.multi:
            sizes = tuple(size_of([domain[a] for a in b]) for b in self.bands)
            return Index(domain, flat=to_flat(self.w, Index(sizes, multi=tuple(self.ivs))))
        by_axis = dict(zip(self.order, self.ivs, strict=True))
        return Index(domain, multi=tuple(by_axis[a] for a in range(len(domain))))

    def _body(self, active: list[_Accumulation]) -> list[SSAValue]:
        """Store every value at one element of the domain; returns the element's
        contribution to each reduction of `active`."""
        e, w = self.e, self.w
        e.reset()
        point = self._point()
        offset = to_flat(w, point) if self.kernel.stores else None
        late: list[tuple[SSAValue, SSAValue]] = []
        for v in self.kernel.stores:
            assert offset is not None
            x = e.emit(v, reshaped(w, point, A.shape_of(v)))
            if v in self.kernel.late:
                late.append((x, v))
            else:
                w.store(x, self.outs[v], offset)
        result = [e.emit(a.reduction.source, reshaped(w, point, A.shape_of(a.reduction.source)))
                  for a in active]
        for acc in self.buffered:
            self._accumulate(acc, point)
        for x, v in late:
            assert offset is not None
            w.store(x, self.outs[v], offset)
        return result

    def _accumulate(self, acc: _Accumulation, point: Index) -> None:
        w, red = self.w, acc.reduction
        assert point.multi is not None
        kept = [a for a in range(len(point.shape)) if a not in acc.axes]
        out = to_flat(w, Index(tuple(point.shape[a] for a in kept),
                               multi=tuple(point.multi[a] for a in kept)))
        buf = self.outs[red.op.result]
        old = w.load(buf, out, A.element_type_of(red.op.result))
        x = self.e.emit(red.source, reshaped(w, point, A.shape_of(red.source)))
        w.store(combine(w, red.op, old, x), buf, out)


def build_fused_kernel(e: ElementEmitter, kernel: Kernel, outs: dict[SSAValue, SSAValue]) -> None:
    """Fill `outs[v]` for every store and reduction result of fused `kernel`."""
    _FusedNest(e, kernel, outs).emit()


def kernel_kind(kernel: Kernel) -> str:
    """A short name of what a fused kernel does, for readers of the IR."""
    if kernel.stores and kernel.reductions:
        return "fused"
    return "reduce" if kernel.reductions else "elementwise"
