"""Long-run memory: resident memory stays flat over compiles, clears and calls.

Run `python benchmarks/soak.py` (`--help` for the options). Three phases, each
measuring the process's resident memory (RSS, from /proc/self/statm) after a
warm-up, with a garbage collection before every reading:

* `compile-clear`: `rounds` times, take a gradient (trace, compile, run) and
  `pb.clear_caches()`: every round compiles the same program again and frees it.
* `calls`: one `pb.compile`d gradient called `calls` times.
* `shapes`: with the cache limited to `limit` entries, gradients of `shapes`
  different input sizes: the cache evicts, so memory stops growing once it is full.

The report gives the growth of each phase and the limit it must stay under
(`LIMITS_MB`); the exit status is 1 when one is exceeded.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pullback as pb  # noqa: E402

LIMITS_MB = {"compile-clear": 5.0, "calls": 2.0, "shapes": 5.0}
"""Allowed RSS growth per phase at the default sizes (300 rounds, 10^5 calls)."""


def rss_mb() -> float:
    """Resident memory of this process in MiB, after a garbage collection."""
    gc.collect()
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def loss(w: np.ndarray, x: np.ndarray) -> object:
    """A small network's loss: enough ops for a realistic compile."""
    h = pb.tanh(x @ w)
    return pb.sum(pb.exp(-h * h) + pb.log(1.0 + h * h))


@dataclass
class Phase:
    name: str
    steps: int
    warmup: int
    start_mb: float
    end_mb: float
    seconds: float

    @property
    def growth_mb(self) -> float:
        return self.end_mb - self.start_mb


def _phase(name: str, step: Callable[[int], None], steps: int, warmup: int) -> Phase:
    for i in range(warmup):
        step(i)
    start, t0 = rss_mb(), time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    return Phase(name, steps, warmup, start, rss_mb(), time.perf_counter() - t0)


def compile_clear(rounds: int, warmup: int, device: str, collect: bool = False) -> Phase:
    """Compile, run and clear the same gradient `rounds` times; with `collect`, collect
    garbage every round, so that the growth shows memory that is never freed rather
    than cyclic garbage the collector has not reached yet (which is bounded)."""
    rng = np.random.default_rng(0)
    w, x = rng.normal(size=(8, 4)), rng.normal(size=(16, 8))

    def step(_: int) -> None:
        with pb.device(device):
            pb.gradient(loss, w, x)
        pb.clear_caches()
        if collect:
            gc.collect()

    return _phase("compile-clear", step, rounds, warmup)


def calls(n: int, warmup: int, device: str) -> Phase:
    """Call one compiled gradient `n` times."""
    rng = np.random.default_rng(1)
    w, x = rng.normal(size=(8, 4)), rng.normal(size=(16, 8))
    with pb.device(device):
        step_fn = pb.compile(loss, w, x, mode="gradient")
    return _phase("calls", lambda _: step_fn(w, x), n, warmup)


def shapes(count: int, limit: int, device: str) -> Phase:
    """Gradients of `count` input sizes with the cache limited to `limit` entries;
    the first `2 * limit` sizes fill the cache (warm-up), the rest evict."""
    previous = pb.set_cache_limit(limit)
    rng = np.random.default_rng(2)
    w = rng.normal(size=(8, 4))

    def step(i: int) -> None:
        with pb.device(device):
            pb.gradient(loss, w, rng.normal(size=(i + 1, 8)))

    try:
        return _phase("shapes", step, count - 2 * limit, 2 * limit)
    finally:
        pb.set_cache_limit(previous)
        pb.clear_caches()


def run(rounds: int = 300, n_calls: int = 100_000, n_shapes: int = 200, limit: int = 16,
        warmup: int = 30, device: str = "cpu", collect: bool = False) -> list[Phase]:
    return [compile_clear(rounds, warmup, device, collect),
            calls(n_calls, warmup * 100, device), shapes(n_shapes, limit, device)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300, help="compile/clear rounds")
    parser.add_argument("--calls", type=int, default=100_000, help="calls of one program")
    parser.add_argument("--shapes", type=int, default=200, help="distinct input sizes")
    parser.add_argument("--limit", type=int, default=16, help="cache limit in the shapes phase")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up rounds")
    parser.add_argument("--device", default="cpu", help='"cpu" or "opencl"')
    parser.add_argument("--collect", action="store_true",
                        help="collect garbage after every compile/clear round")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    phases = run(args.rounds, args.calls, args.shapes, args.limit, args.warmup, args.device,
                 args.collect)
    failed = [p.name for p in phases if p.growth_mb > LIMITS_MB[p.name]]
    if args.json:
        print(json.dumps([{**asdict(p), "growth_mb": p.growth_mb} for p in phases]))
    else:
        print(f"device {args.device}; RSS in MiB after warm-up and at the end")
        print(f"{'phase':<14}{'steps':>8}{'start':>9}{'end':>9}{'growth':>9}{'limit':>7}"
              f"{'seconds':>9}")
        for p in phases:
            print(f"{p.name:<14}{p.steps:>8}{p.start_mb:>9.1f}{p.end_mb:>9.1f}"
                  f"{p.growth_mb:>9.2f}{LIMITS_MB[p.name]:>7.1f}{p.seconds:>9.1f}")
        print(f"compile cache: {pb.cache_info()}")
    if failed:
        print(f"RSS grew past the limit in: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
