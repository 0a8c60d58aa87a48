"""Wall-clock timing: the median of repeated calls after warm-up, and one-off calls."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """Seconds per call over `len(runs)` timed calls."""

    runs: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def best(self) -> float:
        return min(self.runs)


def measure(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> Timing:
    """Call `fn` `warmup` times untimed, then `repeat` times timed (garbage collector off)."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    for _ in range(warmup):
        fn()
    enabled = gc.isenabled()
    gc.disable()
    try:
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
    finally:
        if enabled:
            gc.enable()
    return Timing(tuple(runs))


def time_once(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by one call of `fn`, and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result
