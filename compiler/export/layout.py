"""Where everything of a kernel library's context lives in its one block of memory.

A context is one allocation (or one block the caller supplies), laid out when the
library is generated: the context header, then for each entry its native pointer
table, its seeds and the native outputs it keeps (blocks a user output is taken
from), then one arena that every entry's temporaries share (a context runs one call at
a time, so the largest entry's arena is enough). Every region starts on a 64-byte
boundary. Nothing is allocated after `context_new`.
"""

from __future__ import annotations

import dataclasses

from pullback.compiler.export.entry import ExportEntry, Seed

ALIGN = 64


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclasses.dataclass
class EntryLayout:
    """Offsets (from the end of the context header) of one entry's regions."""

    table: int
    slots: int
    """Pointers in the table: native inputs, native outputs, temporaries."""
    seeds: dict[int, int]
    """Native input index -> offset of its seed."""
    kept: dict[int, int]
    """Native output index -> offset of the block kept in the context."""
    temp_offsets: tuple[int, ...]
    arena_bytes: int


@dataclasses.dataclass
class ContextLayout:
    entries: list[EntryLayout]
    arena: int
    arena_bytes: int
    size: int
    """Bytes after the context header, up to the end of the arena."""


def layout(entries: list[ExportEntry], plans: list[tuple[int, tuple[int, ...]]]) -> ContextLayout:
    """The layout for `entries`, whose memory plans are `(arena bytes, temporary offsets)`."""
    at = 0
    out = []
    for entry, (arena_bytes, offsets) in zip(entries, plans, strict=True):
        slots = len(entry.native_inputs) + len(entry.native_outputs) + len(offsets)
        table, at = at, _aligned(at + 8 * slots)
        seeds = {}
        for k, source in enumerate(entry.native_inputs):
            if isinstance(source, Seed):
                seeds[k], at = at, _aligned(at + source.nbytes)
        kept = {}
        for k, (dtype, shape) in enumerate(entry.native_outputs):
            if entry.native_output_in_context(k):
                n = dtype.itemsize
                for d in shape:
                    n *= d
                kept[k], at = at, _aligned(at + n)
        out.append(EntryLayout(table, slots, seeds, kept, tuple(offsets), arena_bytes))
    arena_bytes = max((e.arena_bytes for e in out), default=0)
    return ContextLayout(out, at, arena_bytes, _aligned(at + arena_bytes))
