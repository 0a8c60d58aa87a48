"""Callback tables: the Python functions that callback ops name by token and `slot`.

Every `ad.callback` / `ad.callback_grad` op reads a 0-d int64 array holding a table's
*token* and names one of its functions by `slot`. The tracer fills a table (one host
function per `slot`, with the shape of the gradient it gets) and registers it; the
executable finds it by token when compiled code calls back (`pullback.compiler.host_calls`).
So the same compiled code serves every trace of the same program, each call reaching
the functions of its own trace. A table lives as long as its token array.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

HostFunction = Callable[[np.ndarray | None], np.ndarray | None]
"""Gets a copy of the gradient (None: no gradient reached that use); returns the
gradient to pass on, or None to pass the same gradient on."""


@dataclass
class CallbackTable:
    """The host functions of one trace, by slot, with the shape of the gradient each gets."""

    functions: list[HostFunction] = field(default_factory=list)
    shapes: list[tuple[int, ...]] = field(default_factory=list)

    def add(self, fn: HostFunction, shape: tuple[int, ...]) -> int:
        """Register `fn`, called with gradients of `shape`; its slot."""
        self.functions.append(fn)
        self.shapes.append(shape)
        return len(self.functions) - 1


_TABLES: dict[int, CallbackTable] = {}
_TOKENS = itertools.count(1)
_REGISTER = threading.Lock()
"""Tables are registered from any thread (every trace, every call with eager updates)."""


def register(table: CallbackTable) -> np.ndarray:
    """The token array that names `table` in compiled code; unregistered when it dies."""
    with _REGISTER:
        token = next(_TOKENS)
        _TABLES[token] = table
    array = np.array(token, dtype=np.int64)
    weakref.finalize(array, _TABLES.pop, token, None)
    return array


def table_of(token: int) -> CallbackTable | None:
    """The table registered under `token` (None once its token array is gone)."""
    return _TABLES.get(token)
