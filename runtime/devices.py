"""Device selection: per call, by context manager, or by `PULLBACK_DEVICE`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

DEVICES = ("cpu",)
_STACK: list[str] = []


def _check(name: str) -> str:
    name = name.strip().lower()
    if name not in DEVICES:
        raise ValueError(
            f"unknown device '{name}'; available devices: {', '.join(DEVICES)}")
    return name


def resolve(device: str | None = None) -> str:
    """The device a call runs on: explicit argument, then context manager, then env."""
    if device is not None:
        return _check(device)
    if _STACK:
        return _STACK[-1]
    return _check(os.environ.get("PULLBACK_DEVICE", "cpu") or "cpu")


@contextmanager
def device(name: str) -> Iterator[str]:
    """Run pullback calls inside the block on device `name`."""
    _STACK.append(_check(name))
    try:
        yield _STACK[-1]
    finally:
        _STACK.pop()
