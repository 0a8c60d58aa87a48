"""First calls in fresh processes: with an empty disk compile cache, then a warm one.

`cold_and_warm(workload, variant)` runs this module twice as a fresh Python process
sharing one new, empty `PULLBACK_CACHE_DIR`: the first process compiles and stores
the program (cold), the second loads it from disk (warm). Each times its first call
(trace + compile or load + one run; for a training workload the first step),
after `import pullback` and the problem's setup, and prints the seconds and its disk
cache counts as JSON.

    python -m benchmarks.first_call WORKLOAD [--variant V] [--small]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class FirstCall:
    """Seconds of one fresh process's first call, how many programs it loaded from
    disk, and the compiled function's `timings` (trace, compile or load, run)."""

    seconds: float
    disk_hits: int
    phases: dict[str, float] = field(default_factory=dict)


def cold_and_warm(workload: str, variant: str = "",
                  small: bool = False) -> tuple[FirstCall, FirstCall]:
    """The first call of a cold process, then of a warm one (see the module docstring).

    Tried twice when the warm process loaded nothing: pullback's keys include a hash
    of its source files, so a file edited between the two processes changes them."""
    for _ in range(2):
        with tempfile.TemporaryDirectory(prefix="pullback-bench-cache-") as cache:
            cold = _fresh(workload, variant, small, cache)
            warm = _fresh(workload, variant, small, cache)
        if warm.disk_hits:
            break
    return cold, warm


def _fresh(workload: str, variant: str, small: bool, cache: str) -> FirstCall:
    command = [sys.executable, "-m", "benchmarks.first_call", workload, "--variant", variant]
    done = subprocess.run(command + (["--small"] if small else []), cwd=ROOT,
                          capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PULLBACK_CACHE_DIR": cache})
    if done.returncode != 0:
        raise RuntimeError(f"the fresh process failed: {done.stderr.strip()[-500:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return FirstCall(**out)


def first_call(workload_name: str, variant: str, small: bool) -> FirstCall:
    """Time this process's first call of the workload on the CPU."""
    from benchmarks import engines, training
    from benchmarks.workloads import ALL

    workload = ALL[workload_name]
    problem = workload.small_problem() if small else workload.setup()
    import pullback as pb

    if workload.transform == "train":
        begin, made = training.pullback_start(workload, problem, "cpu", variant)
        start = time.perf_counter()
        training.first_step(begin)
        seconds = time.perf_counter() - start
        compiled = made[0]
    else:
        data = problem.data

        def loss(*params):
            return workload.objective(*params, *data)

        start = time.perf_counter()
        compiled, _ = engines.compile_and_call(pb, loss, problem.params, {},
                                               workload.transform)
        seconds = time.perf_counter() - start
    return FirstCall(seconds, pb.cache_info().disk_hits, dict(compiled.timings))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("--variant", default="")
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args(argv)
    result = first_call(args.workload, args.variant, args.small)
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
