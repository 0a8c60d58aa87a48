"""The in-memory compile cache: bounded (least recently used first out), thread-safe,
and one compile per key at a time.

It holds at most `limit` compiled programs: `DEFAULT_ENTRIES`, or the
`PULLBACK_CACHE_ENTRIES` environment variable read at import, or what
`set_cache_limit` last set; 0 keeps none (every call compiles). When a new program
would exceed the limit, the one used longest ago is dropped. Dropping an entry frees
its native code (machine code, OpenCL program and buffers) as soon as nothing else
holds it: a `pb.compile` object keeps the code it was made with alive, so evicting
or clearing never breaks a function a user still holds.

Several threads may ask for programs at once. Different keys compile in parallel;
a thread asking for a key that another thread is compiling waits for that compile
and shares its result (counted as a hit), so a key is compiled once.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

DEFAULT_ENTRIES = 64
"""Compiled programs kept in memory by default. Each holds its machine code with the
code generator's tables (about 0.8 MB on the CPU for a small program), its scratch
memory and, for `pb.compile`, the IR text of every stage."""

ENV_VAR = "PULLBACK_CACHE_ENTRIES"

V = TypeVar("V")


@dataclasses.dataclass
class CacheStats:
    """A snapshot of the compile cache.

    hits: requests answered without compiling (including waits for another
    thread's compile of the same program); compiles: programs made because memory
    held none (compiled, or loaded from the disk cache); evictions: entries dropped
    to respect the limit; entries: programs held now; limit: the most it holds.

    The disk cache (`pullback.disk_compile_cache`, CPU programs): disk_hits: programs
    loaded from disk instead of compiled; disk_misses: programs not found there;
    disk_writes: entries stored; disk_rejected: damaged or unloadable entries found,
    deleted and compiled again."""

    hits: int = 0
    compiles: int = 0
    evictions: int = 0
    entries: int = 0
    limit: int = DEFAULT_ENTRIES
    disk_hits: int = 0
    disk_misses: int = 0
    disk_writes: int = 0
    disk_rejected: int = 0


def check_limit(entries: object, source: str = "the cache limit") -> int:
    """`entries` as a cache size, or ValueError saying what is accepted."""
    if isinstance(entries, bool) or not isinstance(entries, int) or entries < 0:
        raise ValueError(f"{source} must be a whole number >= 0 (the most compiled "
                         f"programs kept in memory; 0 keeps none), got {entries!r}")
    return entries


def limit_from_environment() -> int:
    """`PULLBACK_CACHE_ENTRIES` when set (and not empty), else `DEFAULT_ENTRIES`."""
    text = os.environ.get(ENV_VAR, "").strip()
    if not text:
        return DEFAULT_ENTRIES
    try:
        value: object = int(text)
    except ValueError:
        value = text
    return check_limit(value, f"the environment variable {ENV_VAR}")


class CompileCache(Generic[V]):
    """Values by key, at most `limit` of them, each built once (see the module docstring)."""

    def __init__(self, limit: int):
        self._limit = check_limit(limit)
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self._pending: dict[Hashable, tuple[Future[V], int]] = {}
        self._lock = threading.Lock()
        self._stats = CacheStats(limit=self._limit)

    def get(self, key: Hashable, build: Callable[[], V],
            usable: Callable[[V], bool] = lambda value: True) -> V:
        """The value for `key`: a held one that is `usable`, another thread's build
        in progress, or `build()` (kept, evicting the least recently used entry)."""
        while True:
            with self._lock:
                held = self._entries.get(key)
                if held is not None and usable(held):
                    self._entries.move_to_end(key)
                    self._stats.hits += 1
                    return held
                pending = self._pending.get(key)
                if pending is None:
                    future: Future[V] = Future()
                    self._pending[key] = (future, threading.get_ident())
                    break
            future, owner = pending
            if owner == threading.get_ident():
                raise RuntimeError("a program asked for itself while it was being compiled")
            value = future.result()  # the builder's exception, if it failed
            if usable(value):
                with self._lock:
                    self._stats.hits += 1
                return value
        return self._build(key, future, build)

    def _build(self, key: Hashable, future: Future[V], build: Callable[[], V]) -> V:
        try:
            value = build()
        except BaseException as error:
            with self._lock:
                del self._pending[key]
            future.set_exception(error)
            raise
        with self._lock:
            del self._pending[key]
            self._stats.compiles += 1
            dropped = self._keep(key, value)
        future.set_result(value)
        del dropped  # freed here, outside the lock
        return value

    def _keep(self, key: Hashable, value: V) -> list[V]:
        """Insert under the lock; the evicted values (to be dropped by the caller)."""
        if self._limit == 0:
            return []
        self._entries[key] = value
        self._entries.move_to_end(key)
        return self._shrink()

    def _shrink(self) -> list[V]:
        dropped = []
        while len(self._entries) > self._limit:
            dropped.append(self._entries.popitem(last=False)[1])
            self._stats.evictions += 1
        return dropped

    def clear(self) -> None:
        """Drop every entry (compiles in progress still finish and return)."""
        with self._lock:
            dropped = list(self._entries.values())
            self._entries.clear()
        del dropped

    def set_limit(self, entries: int) -> int:
        """Hold at most `entries` programs from now on; the previous limit."""
        check_limit(entries)
        with self._lock:
            previous, self._limit = self._limit, entries
            self._stats.limit = entries
            dropped = self._shrink()
        del dropped
        return previous

    def info(self) -> CacheStats:
        with self._lock:
            return dataclasses.replace(self._stats, entries=len(self._entries))
