"""Host calls: the Python functions compiled code calls back, found by table token and slot.

A trace that uses `showgrad` or `hook` owns a `CallbackTable`
(`pullback.compiler.dialects.callback_table`: one host function per `slot`) and passes
compiled code a 0-d int64 array holding the table's *token*; the callback ops read that
array, so the same compiled code serves every trace of the same program, each call
reaching the functions of its own trace.

Native code calls host functions through `guarded(invoke, ...)`. Python exceptions do
not cross native frames, so `guarded` records the exception and returns the status
`FAILED`; the native code then returns at once (its later steps do not run), and the
executable re-raises the recorded exception (`raise_pending`). Backends that drive
their schedule from Python (OpenCL) call `call` and raise at once. Arrays the failed
call changed get their old bytes back from the runtime's undo journal
(`pullback.compiler.undo`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from pullback.compiler.dialects.callback_table import table_of

_STATE = threading.local()


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
    table = table_of(token)
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
