"""Device selection: per call, by context manager, or by `PULLBACK_DEVICE`.

Devices are `"cpu"` (LLVM, the default) and `"opencl"`; an OpenCL device may name a
platform and device: `"opencl:1"`, `"opencl:0:1"` (indices) or `"opencl:pocl"` (a
case-insensitive substring of the platform or device name).

The device chosen by `device(...)` holds for the thread (or task) that entered it: a
new thread starts on the default device (`PULLBACK_DEVICE`, else "cpu").
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

DEVICES = ("cpu", "opencl")
_CHOSEN: ContextVar[str | None] = ContextVar("pullback_device", default=None)
"""The device of the innermost `device(...)` block of this thread, if any."""


def _check(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a device is a string such as 'cpu' or 'opencl', not {name!r}")
    name = name.strip()
    kind = name.split(":", 1)[0].lower()
    if kind not in DEVICES or (kind == "cpu" and name.lower() != "cpu"):
        raise ValueError(
            f"unknown device '{name}'; available devices: 'cpu', 'opencl', "
            "'opencl:P', 'opencl:P:D' (platform/device indices) or 'opencl:NAME'")
    return kind if kind == name.lower() else f"{kind}:{name.split(':', 1)[1]}"


def resolve(device: str | None = None) -> str:
    """The device a call runs on: explicit argument, then context manager, then env."""
    if device is not None:
        return _check(device)
    chosen = _CHOSEN.get()
    if chosen is not None:
        return chosen
    return _check(os.environ.get("PULLBACK_DEVICE", "cpu") or "cpu")


def backend_of(device: str) -> tuple[str, str | None]:
    """(backend kind, the OpenCL platform/device spec or None)."""
    kind, _, spec = device.partition(":")
    return kind, (spec or None)


@contextmanager
def device(name: str) -> Iterator[str]:
    """Run pullback calls of this thread inside the block on device `name`."""
    chosen = _check(name)
    token = _CHOSEN.set(chosen)
    try:
        yield chosen
    finally:
        _CHOSEN.reset(token)
