"""`memory-plan`: static liveness of temporaries and their offsets in one arena.

Input invariant: kernel-level host functions as `bufferize` writes them
(`pullback.num_inputs`, `pullback.num_outputs`, `pullback.temp_bytes`, optionally
`pullback.temp_kinds`; a body of `memref.cast`, `arith.constant` and one `func.call`
per step).

Output IR: the same module; each host function also carries `pullback.arena_bytes`
(the size of the one arena its temporaries share) and `pullback.temp_offsets` (the
byte offset of each temporary in that arena, in argument order). A temporary that
shares bytes with another loses its `llvm.noalias` argument attribute: the host
function's arguments may then alias, and code after it must not reorder the accesses
of one step past those of another.

A temporary is live from the first step that touches it to the last, both included,
so the buffers one step reads and writes are live together. Temporaries whose live
ranges are disjoint may share bytes; each is placed, largest first, in the smallest
free gap among the temporaries live at the same time (best fit), at an offset that
is a multiple of the alignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from xdsl.context import Context
from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    DictionaryAttr,
    IntegerAttr,
    ModuleOp,
    i64,
)
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass

from pullback.compiler.dialects import array as A
from pullback.compiler.transforms.memory_kinds import peak_residual_bytes, read_temp_kinds

ALIGNMENT = 64
"""Bytes every temporary's offset is a multiple of."""


def _round_up(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


@dataclass(frozen=True)
class MemoryPlan:
    """Where each temporary of one host function lives.

    Attributes:
        sizes: bytes of each temporary, in argument order.
        intervals: the first and last host step (inclusive) touching each temporary.
        offsets: byte offset of each temporary in the arena.
        arena_bytes: size of the arena.
        alignment: what every offset is a multiple of.
        kinds: "residual" or "scratch" per temporary (`transforms.memory_kinds`);
            empty when unknown, which counts as all scratch.
    """

    sizes: tuple[int, ...]
    intervals: tuple[tuple[int, int], ...]
    offsets: tuple[int, ...]
    arena_bytes: int
    alignment: int
    kinds: tuple[str, ...] = ()

    def shared(self) -> set[int]:
        """The temporaries that share some bytes of the arena with another one."""
        order = sorted((o, o + n, i) for i, (o, n) in enumerate(
            zip(self.offsets, self.sizes, strict=True)) if n)
        out: set[int] = set()
        reach, owner = -1, -1
        for start, end, i in order:
            if start < reach:
                out |= {i, owner}
            if end > reach:
                reach, owner = end, i
        return out

    @property
    def residual_bytes(self) -> int:
        """Bytes of the residuals live where the live temporaries take the most bytes."""
        return peak_residual_bytes(self.sizes, self.intervals, self.kinds) if self.kinds else 0

    @property
    def unplanned_bytes(self) -> int:
        """Bytes the temporaries would take each in its own aligned allocation."""
        return sum(_round_up(n, self.alignment) for n in self.sizes)

    def realigned(self, alignment: int) -> MemoryPlan:
        """The same liveness placed again with offsets a multiple of `alignment`."""
        if alignment <= self.alignment:
            return self
        return replace(assign_offsets(self.sizes, self.intervals, alignment), kinds=self.kinds)


def assign_offsets(sizes: Sequence[int], intervals: Sequence[tuple[int, int]],
                   alignment: int = ALIGNMENT) -> MemoryPlan:
    """Best-fit placement of buffers whose lifetimes are `intervals` (inclusive steps)."""
    if alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"alignment must be a positive power of two, got {alignment}")
    if len(sizes) != len(intervals):
        raise ValueError(f"{len(sizes)} sizes but {len(intervals)} live intervals")
    slots = [_round_up(n, alignment) for n in sizes]
    offsets = [0] * len(sizes)
    placed: list[int] = []
    for i in sorted(range(len(sizes)), key=lambda j: (-slots[j], -sizes[j], intervals[j][0], j)):
        busy = sorted((offsets[j], offsets[j] + slots[j]) for j in placed
                      if slots[j] and _overlaps(intervals[i], intervals[j]))
        offsets[i] = _best_gap(busy, slots[i])
        placed.append(i)
    arena = max((o + n for o, n in zip(offsets, sizes, strict=True)), default=0)
    return MemoryPlan(tuple(sizes), tuple(intervals), tuple(offsets), arena, alignment)


def _best_gap(busy: list[tuple[int, int]], size: int) -> int:
    """The start of the smallest free gap of at least `size` bytes among `busy` ranges."""
    best: tuple[int, int] | None = None
    cursor = 0
    for start, end in busy:
        gap = start - cursor
        if gap >= size and (best is None or gap < best[0]):
            best = (gap, cursor)
        cursor = max(cursor, end)
    return cursor if best is None else best[1]


def _step_buffers(host: func.FuncOp) -> list[set[int]]:
    """The host arguments each step (`func.call`) of the schedule touches."""
    args = host.body.block.args
    index: dict[SSAValue, int] = {a: i for i, a in enumerate(args)}
    steps: list[set[int]] = []
    for op in host.body.block.ops:
        match op:
            case memref.CastOp():
                index[op.dest] = index[op.source]
            case func.CallOp():
                steps.append({index[a] for a in op.arguments if a in index})
            case arith.ConstantOp() | func.ReturnOp():
                pass
            case _:
                raise NotImplementedError(
                    f"memory planning cannot read '{op.name}' in the host schedule of "
                    f"@{host.sym_name.data}")
    return steps


def _int(host: func.FuncOp, key: str) -> int:
    attr = host.attributes.get(key)
    if not isinstance(attr, IntegerAttr):
        raise ValueError(f"@{host.sym_name.data} has no {key}: run bufferize first")
    return attr.value.data


def is_host_function(op: object) -> bool:
    """Whether `op` is a host function written by `bufferize`."""
    return isinstance(op, func.FuncOp) and "pullback.temp_bytes" in op.attributes


def plan_memory(host: func.FuncOp, alignment: int = ALIGNMENT) -> MemoryPlan:
    """Liveness and arena offsets of the temporaries of a kernel-level host function."""
    temp_attr = host.attributes.get("pullback.temp_bytes")
    if not isinstance(temp_attr, DenseArrayBase):
        raise ValueError(f"@{host.sym_name.data} is not a kernel-level host function: "
                         "run bufferize first")
    sizes = [int(v) for v in temp_attr.get_values()]
    first = _int(host, "pullback.num_inputs") + _int(host, "pullback.num_outputs")
    steps = _step_buffers(host)
    intervals: list[tuple[int, int]] = []
    for t in range(first, first + len(sizes)):
        touched = [s for s, bufs in enumerate(steps) if t in bufs]
        intervals.append((touched[0], touched[-1]) if touched else (0, 0))
    kinds = read_temp_kinds(host, len(sizes))
    return replace(assign_offsets(sizes, intervals, alignment), kinds=kinds)


def annotate(host: func.FuncOp, plan: MemoryPlan) -> None:
    """Record `plan` as `pullback.arena_bytes` and `pullback.temp_offsets` on `host`, and
    drop `llvm.noalias` from the temporaries that share bytes."""
    host.attributes["pullback.arena_bytes"] = IntegerAttr(plan.arena_bytes, i64)
    host.attributes["pullback.temp_offsets"] = A.i64_array(list(plan.offsets))
    shared = plan.shared()
    if not shared or host.arg_attrs is None:
        return
    first = len(host.body.block.args) - len(plan.sizes)
    attrs = list(host.arg_attrs.data)
    for i in shared:
        attrs[first + i] = DictionaryAttr({})
    host.arg_attrs = ArrayAttr(attrs)


def _human(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


@dataclass(frozen=True, repr=False)
class MemoryReport:
    """The bytes one call of a compiled function uses.

    `peak_bytes == inputs + outputs + gradients + residuals + scratch`; printed, it
    is a table.

    Attributes:
        peak_bytes: everything live during a call.
        inputs: bytes of the arrays the caller passes in.
        outputs: bytes of the arrays each call returns (allocated fresh per call),
            gradients excepted.
        gradients: bytes of the returned arrays that are gradients (0 until
            `with_gradients` says which are).
        residuals: bytes of the saved activations: the temporaries the backward part
            reads from the forward part, counted at the step where the live
            temporaries take the most bytes (`MemoryPlan.residual_bytes`).
        scratch: the rest of the arena: `temporaries - residuals`.
        temporaries: bytes of the arena all temporaries share (allocated once).
        unplanned_bytes: bytes the temporaries would take without sharing.
    """

    peak_bytes: int
    inputs: int
    outputs: int
    gradients: int
    residuals: int
    scratch: int
    temporaries: int
    unplanned_bytes: int

    @classmethod
    def of(cls, plan: MemoryPlan, inputs: Sequence[tuple[np.dtype, tuple[int, ...]]],
           outputs: Sequence[tuple[np.dtype, tuple[int, ...]]]) -> MemoryReport:
        """The report of a function with `inputs`/`outputs` (dtype, shape) and `plan`."""
        def total(specs: Sequence[tuple[np.dtype, tuple[int, ...]]]) -> int:
            return sum(int(np.prod(s, dtype=np.int64)) * d.itemsize for d, s in specs)
        n_in, n_out = total(inputs), total(outputs)
        arena, residuals = plan.arena_bytes, plan.residual_bytes
        return cls(n_in + n_out + arena, n_in, n_out, 0, residuals, arena - residuals, arena,
                   plan.unplanned_bytes)

    def with_gradients(self, nbytes: int) -> MemoryReport:
        """The same report with `nbytes` of the outputs counted as gradients."""
        if not 0 <= nbytes <= self.outputs:
            raise ValueError(
                f"gradient bytes must be between 0 and the output bytes {self.outputs}, "
                f"got {nbytes}")
        return replace(self, outputs=self.outputs - nbytes, gradients=self.gradients + nbytes)

    def __repr__(self) -> str:
        def row(name: str, n: int, note: str = "") -> str:
            return f"  {name:<16}{n:>14,}  {_human(n):>10}{note}".rstrip()

        parts = ("inputs", "outputs", "gradients", "residuals", "scratch")
        return "\n".join([
            "MemoryReport (bytes per call)",
            *(row(name, getattr(self, name)) for name in parts),
            "  " + "-" * 42,
            row("peak_bytes", self.peak_bytes, "   (the sum of the above)"),
            row("temporaries", self.temporaries, "   (residuals + scratch: one arena)"),
            row("unplanned_bytes", self.unplanned_bytes, "   (temporaries without sharing)"),
        ])


@dataclass(frozen=True)
class MemoryPlanPass(ModulePass):
    """Plan the temporaries of every host function into one arena (module docstring)."""

    name = "memory-plan"

    alignment: int = ALIGNMENT

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for f in op.body.block.ops:
            if is_host_function(f):
                assert isinstance(f, func.FuncOp)
                annotate(f, plan_memory(f, self.alignment))
