"""What each temporary of a lowered derivative holds: a residual or scratch.

A *residual* (saved activation) is a value the forward part computes and the backward
part reads: a temporary computed before the function's `ad.reverse_begin` and read by
a kernel that computes some value after it. Every other temporary is *scratch*;
without a marker (no reverse sweep) all of them are. `fuse` drops the marker
(`split_at_reverse_begin`) and marks what each step computes before it (`FORWARD`);
`bufferize` records the kinds (`temp_kinds`) as `pullback.temp_kinds` on the host
function; the memory report
counts the residuals live when the temporaries take the most bytes
(`peak_residual_bytes`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, StringAttr
from xdsl.ir import SSAValue

from pullback.compiler.dialects.ad import ReverseBeginOp

FORWARD = "pullback.forward"
"""Attribute of a schedule step (written by `fuse`): the indices of its results the
forward part computes, when its function has a reverse sweep."""
REVERSE_SWEEP = "pullback.reverse_sweep"
"""Function attribute (written by `fuse`): the function had an `ad.reverse_begin`."""
TEMP_KINDS = "pullback.temp_kinds"
"""Host-function attribute: the kind of each temporary, in argument order."""
RESIDUAL, SCRATCH = "residual", "scratch"


def split_at_reverse_begin(function: func.FuncOp) -> frozenset[SSAValue] | None:
    """Drop `function`'s `ad.reverse_begin`; the values computed before it (None when
    the function has none)."""
    forward: set[SSAValue] = set()
    for op in function.body.block.ops:
        if isinstance(op, ReverseBeginOp):
            op.detach()
            op.erase()
            return frozenset(forward)
        forward.update(op.results)
    return None


class Step(Protocol):
    """A step of a schedule: the values it reads and the values it writes."""

    @property
    def reads(self) -> Sequence[SSAValue]: ...

    @property
    def outputs(self) -> Sequence[SSAValue]: ...


def temp_kinds(steps: Iterable[Step], forward: frozenset[SSAValue] | None,
               home: Mapping[SSAValue, int], first: int, count: int) -> ArrayAttr[StringAttr]:
    """The kind of each of the `count` temporaries, buffers `first`, `first + 1`, ...:
    `home` maps values to their buffer; `forward` holds the values the forward part
    computes (None without a reverse sweep). A buffer holding no value of `home` is
    scratch."""
    residual: set[SSAValue] = set()
    if forward is not None:
        for kernel in steps:
            if any(v not in forward for v in kernel.outputs):
                residual.update(v for v in kernel.reads if v in forward)
    kinds = [SCRATCH] * count
    for v, i in home.items():
        if i >= first and v in residual:
            kinds[i - first] = RESIDUAL
    return ArrayAttr([StringAttr(k) for k in kinds])


def read_temp_kinds(host: func.FuncOp, count: int) -> tuple[str, ...]:
    """The kinds recorded on `host` for its `count` temporaries (all scratch if none are)."""
    attr = host.attributes.get(TEMP_KINDS)
    if attr is None:
        return (SCRATCH,) * count
    kinds = tuple(k.data for k in attr.data) if isinstance(attr, ArrayAttr) else ()
    if len(kinds) != count or any(k not in (RESIDUAL, SCRATCH) for k in kinds):
        raise ValueError(
            f"@{host.sym_name.data}: {TEMP_KINDS} must list '{RESIDUAL}' or '{SCRATCH}' "
            f"for each of its {count} temporaries, got {attr}")
    return kinds


def peak_residual_bytes(sizes: Sequence[int], intervals: Sequence[tuple[int, int]],
                        kinds: Sequence[str]) -> int:
    """Bytes of the residuals live at the step where the live temporaries take the most
    bytes (of those steps, the one with the most residual bytes); `intervals` are the
    inclusive live steps of each temporary."""
    steps = max((end for _, end in intervals), default=-1) + 1
    total, saved = [0] * (steps + 1), [0] * (steps + 1)
    for n, (start, end), kind in zip(sizes, intervals, kinds, strict=True):
        for change, sign in ((total, 1), (saved, int(kind == RESIDUAL))):
            change[start] += sign * n
            change[end + 1] -= sign * n
    best, live, live_saved = (0, 0), 0, 0
    for step in range(steps):
        live, live_saved = live + total[step], live_saved + saved[step]
        best = max(best, (live, live_saved))
    return best[1]
