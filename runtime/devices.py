"""Device selection: per call, by context manager, or by `PULLBACK_DEVICE`.

Devices are `"cpu"` (LLVM, the default) and `"opencl"`; an OpenCL device may name a
platform and device: `"opencl:1"`, `"opencl:0:1"` (indices) or `"opencl:pocl"` (a
case-insensitive substring of the platform or device name).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

DEVICES = ("cpu", "opencl")
_STACK: list[str] = []


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
    if _STACK:
        return _STACK[-1]
    return _check(os.environ.get("PULLBACK_DEVICE", "cpu") or "cpu")


def backend_of(device: str) -> tuple[str, str | None]:
    """(backend kind, the OpenCL platform/device spec or None)."""
    kind, _, spec = device.partition(":")
    return kind, (spec or None)


@contextmanager
def device(name: str) -> Iterator[str]:
    """Run pullback calls inside the block on device `name`."""
    _STACK.append(_check(name))
    try:
        yield _STACK[-1]
    finally:
        _STACK.pop()
