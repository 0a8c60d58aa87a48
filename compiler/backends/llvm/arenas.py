"""`ArenaPool`: the scratch arenas of one compiled function, one per concurrent call.

The static memory plan lays every temporary of a call out in one arena. Two calls
running at once (from two threads, or a host call that calls the same function again)
need two arenas, so a call takes an idle arena from the pool and gives it back when it
returns. A call finding none idle allocates a fresh one; the pool keeps at most
`idle_limit` idle arenas, so a burst of many threads does not hold its memory for
ever. One thread calling again and again reuses one arena: no allocation per call.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np


class Arena:
    """One arena: its memory and the address of each temporary in it."""

    __slots__ = ("memory", "pointers")

    def __init__(self, size: int, offsets: Sequence[int]):
        self.memory = np.empty(size, np.uint8)
        base = self.memory.ctypes.data
        self.pointers = [base + offset for offset in offsets]


class ArenaPool:
    """Arenas of `size` bytes with temporaries at `offsets`, lent one per call."""

    def __init__(self, size: int, offsets: Sequence[int], idle_limit: int | None = None):
        self.size = size
        self.offsets = tuple(offsets)
        self.idle_limit = max(1, os.cpu_count() or 1) if idle_limit is None else idle_limit
        self._lock = threading.Lock()
        self._idle = [Arena(size, self.offsets)]
        self.allocated = 1
        """How many arenas this pool has allocated in all (for tests and reports)."""

    def take(self) -> Arena:
        """An arena no other call is using: an idle one, else a new one."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self.allocated += 1
        return Arena(self.size, self.offsets)

    def give(self, arena: Arena) -> None:
        """Return `arena` (taken from this pool) once its call is over."""
        with self._lock:
            if len(self._idle) < self.idle_limit:
                self._idle.append(arena)

    @property
    def idle(self) -> int:
        """How many arenas wait for a call."""
        return len(self._idle)
