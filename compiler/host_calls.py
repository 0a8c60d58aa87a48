"""Host calls: the Python functions compiled code calls back, found by table token and slot.

A trace that uses `showgrad` or `hook` owns a `CallbackTable` (one host function per
`slot`) and passes compiled code a 0-d int64 array holding the table's *token*; the
callback ops read that array, so the same compiled code serves every trace of the
same program, each call reaching the functions of its own trace. A table lives as
long as its token array (the program that passes it).

Native code calls host functions through `guarded(invoke, ...)`. Python exceptions do
not cross native frames, so `guarded` records the exception and returns the status
`FAILED`; the native code then returns at once (its later steps do not run), and the
executable re-raises the recorded exception (`raise_pending`). Backends that drive
their schedule from Python (OpenCL) call `call` and raise at once. Arrays the failed
call changed get their old bytes back from the runtime's undo journal
(`pullback.compiler.undo`).
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
_STATE = threading.local()


def register(table: CallbackTable) -> np.ndarray:
    """The token array that names `table` in compiled code; unregistered when it dies."""
    with _REGISTER:
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
    """`call`, writing the gradient passed on into `dst`."""
    out = call(token, slot, unreached, value)
    dst[...] = value if out is None else out


OK, FAILED = 0, 1
"""The status a host call returns to native code: go on, or return at once."""


def guarded(fn: Callable[..., object], *args: object) -> int:
    """`fn(*args)` from native code: `OK`, or `FAILED` with the exception recorded for
    `raise_pending` (and nothing run if an earlier host call of this call failed)."""
    if getattr(_STATE, "error", None) is not None:
        return FAILED
    try:
        fn(*args)
    except BaseException as error:  # noqa: BLE001 - re-raised after the native call
        _STATE.error = error
        return FAILED
    return OK
