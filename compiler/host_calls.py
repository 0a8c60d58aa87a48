"""Host calls: the Python functions compiled code calls back, found by table token and slot.

A trace that uses `showgrad` or `hook` owns a `CallbackTable` (one host function per
`slot`) and passes compiled code a 0-d int64 array holding the table's *token*; the
callback ops read that array, so the same compiled code serves every trace of the
same program, each call reaching the functions of its own trace. A table lives as
long as its token array (the program that passes it).

Every backend calls `invoke(token, slot, unreached, value)`. Python exceptions do not
cross native frames, so `invoke` records the first one; the host calls after it are
skipped, the native code finishes its work, and the executable re-raises the
recorded exception after the native call returns (`take_error`). Backends that drive
their schedule from Python (OpenCL) raise at once instead.
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
_STATE = threading.local()


def register(table: CallbackTable) -> np.ndarray:
    """The token array that names `table` in compiled code; unregistered when it dies."""
    token = next(_TOKENS)
    _TABLES[token] = table
    array = np.array(token, dtype=np.int64)
    weakref.finalize(array, _TABLES.pop, token, None)
    return array


def begin() -> None:
    """Forget an error left from an earlier call on this thread."""
    _STATE.error = None


def take_error() -> BaseException | None:
    """The first exception a host function raised since `begin`, and forget it."""
    error = getattr(_STATE, "error", None)
    _STATE.error = None
    return error


def raise_pending() -> None:
    """Re-raise the exception a host function raised during the last native call."""
    error = take_error()
    if error is not None:
        raise error


def call(token: int, slot: int, unreached: bool, value: np.ndarray) -> np.ndarray | None:
    """Run the host function at `slot` of table `token` on the elements `value` (flat,
    row-major); the gradient it passes on (None: `value`). Exceptions propagate."""
    table = _TABLES.get(token)
    if table is None or not 0 <= slot < len(table.functions):
        raise RuntimeError(f"compiled code called host function {slot} of an unknown "
                           f"callback table {token}")
    shape = table.shapes[slot]
    out = table.functions[slot](None if unreached else value.reshape(shape).copy())
    return None if unreached or out is None else np.ravel(out)


def invoke(token: int, slot: int, unreached: bool, value: np.ndarray, dst: np.ndarray) -> None:
    """`call`, writing the gradient passed on into `dst`; records exceptions (see above)."""
    if getattr(_STATE, "error", None) is not None:
        return
    try:
        out = call(token, slot, unreached, value)
        dst[...] = value if out is None else out
    except BaseException as error:  # noqa: BLE001 - re-raised after the native call
        _STATE.error = error
