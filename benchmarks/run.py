"""Run the gradient benchmarks and print one table: `python benchmarks/run.py [--help]`.

Every row is timed in the same run: pullback's compiled gradient (steady-state median
and first call: trace + compile + one run; the first call also in fresh processes with
an empty and a warm disk compile cache), the hand-written numpy gradient, and
`jax.jit(jax.grad(...))` when JAX is installed. `check` compares each gradient with
numpy's (largest error relative to the largest numpy magnitude). A training workload
times one optimiser step per call and compares the parameters after a fixed number of
steps (`benchmarks.training`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pullback as pb  # noqa: E402
from benchmarks import engines, first_call, training  # noqa: E402
from benchmarks.compare import relative_error  # noqa: E402
from benchmarks.engines import EngineResult, jax_available  # noqa: E402
from benchmarks.table import Row, render  # noqa: E402
from benchmarks.workload import Workload  # noqa: E402
from benchmarks.workloads import ALL as WORKLOADS  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per system (median)")
    parser.add_argument(
        "--only", action="append", choices=sorted(WORKLOADS), help="run only this workload"
    )
    parser.add_argument(
        "--device", action="append", default=[],
        help="also time pullback on this device (e.g. opencl); cpu rows always run")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--small", action="store_true", help="tiny float64 instances (a smoke run)")
    parser.add_argument("--no-jax", action="store_true", help="leave the JAX columns empty")
    parser.add_argument("--no-cold-warm", action="store_true",
                        help="leave the fresh-process first-call columns (pb cold, pb warm) empty")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    return args


def _guarded(run, *args) -> EngineResult:
    """Run one system; a failure becomes an error note instead of ending the benchmark."""
    try:
        return run(*args)
    except Exception as exc:  # a failing system is reported under the table, not raised
        if os.environ.get("PULLBACK_BENCH_TRACEBACK"):
            traceback.print_exc()
        return EngineResult(error=f"{type(exc).__name__}: {exc}".splitlines()[0])


def devices(args: argparse.Namespace) -> list[str]:
    """The pullback devices to time: cpu, then every other --device."""
    return ["cpu"] + [d for d in dict.fromkeys(args.device) if d != "cpu"]


def engine_of(workload: Workload) -> ModuleType:
    """The module that sets up and times every system on `workload`."""
    return training if workload.transform == "train" else engines


def row_name(workload: Workload, variant: str, device: str) -> str:
    """The workload's name, tagged with a pullback variant and a device other than cpu."""
    tags = [tag for tag in (variant, device) if tag and tag != "cpu"]
    return f"{workload.name} [{', '.join(tags)}]" if tags else workload.name


def benchmark(workload: Workload, args: argparse.Namespace) -> list[Row]:
    """Time every system on one workload (one row per pullback device and variant, numpy
    and JAX timed once and shown on each) and check every output against numpy's."""
    engine = engine_of(workload)
    problem = workload.small_problem() if args.small else workload.setup()
    shared = {"numpy": _guarded(engine.run_numpy, workload, problem, args.repeat)}
    if jax_available() and not args.no_jax:
        shared["jax"] = _guarded(engine.run_jax, workload, problem, args.repeat)
    rows = []
    for device in devices(args):
        for variant in engine.VARIANTS:
            results = dict(shared)
            results["pullback"] = _guarded(
                engine.run_pullback, workload, problem, args.repeat, device, variant)
            if device == "cpu" and not args.no_cold_warm:
                _cold_and_warm(results["pullback"], workload, variant, args.small)
            name = row_name(workload, variant, device)
            row = Row(name, workload.summary, problem.sizes, results, rtol=workload.rtol)
            _check(row, results)
            rows.append(row)
    return rows


def _cold_and_warm(result: EngineResult, workload: Workload, variant: str, small: bool) -> None:
    """pullback's first call in fresh processes with an empty, then a warm disk cache
    (CPU only: OpenCL keeps program binaries in a cache of its own)."""
    if result.error is not None:
        return
    try:
        cold, warm = first_call.cold_and_warm(workload.name, variant, small)
    except Exception as exc:  # reported under the table, like a failing system
        result.error = f"fresh-process first call: {type(exc).__name__}: {exc}".splitlines()[0]
        return
    result.cold_first = cold.seconds
    result.warm_first = warm.seconds if warm.disk_hits else None


def _check(row: Row, results: dict[str, EngineResult]) -> None:
    reference = results["numpy"].output
    for system in ("pullback", "jax"):
        result = results.get(system)
        if reference is None or result is None or result.error is not None:
            continue
        try:
            row.checks[system] = relative_error(result.output, reference)
        except ValueError as exc:
            result.error = f"output does not match numpy's structure: {exc}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def to_json(rows: list[Row], args: argparse.Namespace) -> dict:
    def result(r: EngineResult) -> dict:
        steady = asdict(r.steady) if r.steady else None
        median = r.steady.median if r.steady else None
        return {
            "median_s": median,
            "runs_s": steady and steady["runs"],
            "first_call_s": r.first_call,
            "cold_first_s": r.cold_first,
            "warm_first_s": r.warm_first,
            "phases_s": r.phases,
            "error": r.error,
        }

    return {
        "machine": machine(),
        "devices": devices(args),
        "repeat": args.repeat,
        "rows": [
            {
                "workload": row.name,
                "summary": row.summary,
                "sizes": row.sizes,
                "check": row.checks,
                "systems": {k: result(v) for k, v in row.results.items()},
            }
            for row in rows
        ],
    }


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    names = args.only or list(WORKLOADS)
    previous = pb.set_disk_cache(False)  # "pb first" compiles; fresh processes use the cache
    try:
        rows = [row for name in names for row in benchmark(WORKLOADS[name], args)]
    finally:
        pb.set_disk_cache(previous)
    print(
        f"pullback gradient benchmarks on {machine()}; devices {', '.join(devices(args))}; "
        f"median of {args.repeat} calls"
    )
    print(render(rows))
    if "opencl" in " ".join(devices(args)):
        print("[opencl] rows ran on the first OpenCL device; with PoCL on a machine without a "
              "GPU they are CPU figures.")
    if args.json:
        args.json.write_text(json.dumps(to_json(rows, args), indent=2, default=str) + "\n")
    return rows


if __name__ == "__main__":
    main()
