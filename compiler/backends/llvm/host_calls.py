"""Host calls on the CPU: `pullback_host_call_<T>` bound to a ctypes callback.

The kernel-level `func.call @pullback_host_call_<T>(table, slot, unreached, n, src,
dst)` becomes a call to an external symbol that the JIT resolves to one ctypes
function per element type, kept alive here for the life of the process. The callback
reads the table token, wraps `src` and `dst` as numpy arrays and hands them to
`pullback.compiler.host_calls.invoke`; it returns an i32 status (`host_calls.OK` or
`FAILED`, the exception recorded for the executable to re-raise), on which the
native code returns at once (`host-call-status`).
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np
from llvmlite import binding

from pullback.compiler import host_calls
from pullback.compiler.dialects.kernel import HOST_CALL_PREFIX

_DTYPES = {"f64": np.dtype(np.float64), "f32": np.dtype(np.float32)}
_SIGNATURE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                              ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p)
_CALLBACKS: dict[str, object] = {}
_BINDING = threading.Lock()
"""One callback per symbol even when several threads compile at once: code already
compiled calls the first one, so it must never be replaced (and freed)."""


def _array(address: int, n: int, dtype: np.dtype) -> np.ndarray:
    if n == 0:
        return np.empty(0, dtype)
    buffer = (ctypes.c_char * (n * dtype.itemsize)).from_address(address)
    return np.frombuffer(buffer, dtype)


def _make_callback(dtype: np.dtype) -> object:
    def run(table: int, slot: int, unreached: int, n: int, src: int, dst: int) -> None:
        token = int(_array(table, 1, np.dtype(np.int64))[0])
        host_calls.invoke(token, slot, bool(unreached), _array(src, n, dtype),
                          _array(dst, n, dtype))

    def callback(table: int, slot: int, unreached: int, n: int, src: int, dst: int) -> int:
        return host_calls.guarded(run, table, slot, unreached, n, src, dst)

    return _SIGNATURE(callback)


def bind_host_call_symbol(symbol: str) -> None:
    """Make the host-call `symbol` (`pullback_host_call_<T>`) resolvable by the JIT."""
    with _BINDING:
        if symbol in _CALLBACKS:
            return
        element = symbol[len(HOST_CALL_PREFIX):]
        if element not in _DTYPES:
            raise NotImplementedError(f"no host call for element type {element} ({symbol})")
        cb = _make_callback(_DTYPES[element])
        _CALLBACKS[symbol] = cb
        binding.add_symbol(symbol, ctypes.cast(cb, ctypes.c_void_p).value)
