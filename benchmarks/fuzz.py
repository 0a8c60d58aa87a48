"""Fuzz pullback with random DSL programs: `python benchmarks/fuzz.py [--help]`.

Each program (see `benchmarks/fuzzing/programs.py`) is compiled and checked: its value
against numpy, its gradient, forward-mode derivative, Jacobian and Hessian against
central finite differences, and with `--device both` the OpenCL results against the CPU's.
Program k is generated from seed `S * 1000003 + k` with an op count that grows up to
`--max-ops` over every `--ramp` programs; every fourth program is mostly unrolled
loops (deep chains whose values are read several times) and every fourth works on
arrays of up to 4096 elements (kernels split over work-groups). Every failure is
reproducible from its seed; each failing program's source, inputs and findings are
written to `--out`.

    python benchmarks/fuzz.py --programs 10000 --device cpu --jobs 2
    python benchmarks/fuzz.py --programs 500 --device both --seed 3 --max-ops 60
    python benchmarks/fuzz.py --programs 500 --seed 3 --replay 17   # program 17 of that run
    python benchmarks/fuzz.py --recheck /tmp/pullback-fuzz-failures  # again, after a fix
"""

from __future__ import annotations

import argparse
import ast
import collections
import concurrent.futures as cf
import contextlib
import dataclasses
import json
import os
import re
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.fuzzing import (  # noqa: E402
    Failure,
    Outcome,
    RandomChooser,
    check_program,
    generate,
)
from benchmarks.fuzzing.programs import STYLES  # noqa: E402


@dataclasses.dataclass
class Task:
    seed: int
    ops: int
    style: str
    devices: tuple[str, ...]
    jvp: bool
    jacobian: bool
    hessian: bool


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=1000, help="programs to try")
    parser.add_argument("--device", choices=("cpu", "opencl", "both"), default="cpu",
                        help="where to run; 'both' also compares OpenCL with the CPU")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole run")
    parser.add_argument("--max-ops", type=int, default=60,
                        help="largest op count; it grows from 1 over every --ramp programs")
    parser.add_argument("--ramp", type=int, default=500,
                        help="programs over which the op count grows to --max-ops, repeatedly")
    parser.add_argument("--style", choices=("cycle", *STYLES), default="cycle",
                        help="program style: 'cycle' takes mixed, large, mixed, recurrent "
                             "in turn")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--jvp-every", type=int, default=3,
                        help="check forward mode on every k-th program (0: never)")
    parser.add_argument("--jacobian-every", type=int, default=3,
                        help="check pb.jacobian on every k-th program with small inputs, "
                             "one after --jvp-every's (0: never)")
    parser.add_argument("--hessian-every", type=int, default=3,
                        help="check the Hessian on every k-th program with small inputs, "
                             "two after --jvp-every's (0: never)")
    parser.add_argument("--out", type=Path,
                        default=Path(tempfile.gettempdir()) / "pullback-fuzz-failures",
                        help="folder for one reproducer per failing program")
    parser.add_argument("--time-limit", type=float, default=0.0,
                        help="stop starting programs after this many seconds (0: no limit)")
    parser.add_argument("--replay", type=int, default=None,
                        help="check only program k of the run that the other options "
                             "describe, printing its source")
    parser.add_argument("--recheck", type=Path, default=None,
                        help="check again the programs whose reproducers are in this folder")
    return parser.parse_args(argv)


def ops_for(k: int, args: argparse.Namespace) -> int:
    """Op count of program k: uniform in [1, cap], the cap growing from 1 to --max-ops
    over every `--ramp` programs (so a run cut short still reaches the largest sizes)."""
    ramp = max(1, min(args.ramp, args.programs))
    cap = 1 + ((k % ramp) * (args.max_ops - 1)) // max(1, ramp - 1)
    return RandomChooser(args.seed * 7919 + k).integer(1, cap)


def task_for(k: int, args: argparse.Namespace) -> Task:
    devices = {"cpu": ("cpu",), "opencl": ("opencl",), "both": ("cpu", "opencl")}[args.device]
    return Task(seed=args.seed * 1000003 + k, ops=ops_for(k, args),
                style=_style(k, args.style), devices=devices,
                jvp=_every(k, args.jvp_every), jacobian=_every(k, args.jacobian_every, 1),
                hessian=_every(k, args.hessian_every, 2))


def _style(k: int, style: str) -> str:
    """The style of program k: in a "cycle", every 4th is recurrent and every 4th
    (another) large."""
    if style != "cycle":
        return style
    return {1: "large", 3: "recurrent"}.get(k % 4, "mixed")


def _every(k: int, n: int, offset: int = 0) -> bool:
    """Whether program k is one of every n-th (from `offset`); never for n = 0."""
    return n > 0 and k % n == offset % n


Result = tuple[Task, Outcome, float, str]


def run_task(task: Task) -> Result:
    """Generate and check one program (in a worker process); also the CPU seconds it took
    and, if it failed, its reproducer (written where it was generated)."""
    import pullback as pb

    start = _cpu_seconds()
    program = generate(RandomChooser(task.seed), task.ops, task.style)
    try:
        outcome = check_program(program, task.devices, jvp=task.jvp, jacobian=task.jacobian,
                                hessian=task.hessian)
    finally:
        pb.clear_caches()
    text = program.reproducer() if outcome.failures else ""
    return task, outcome, _cpu_seconds() - start, text


def _cpu_seconds() -> float:
    """CPU time of this process and of the processes it waited for (the OpenCL compiler
    runs a linker per program)."""
    own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                       resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_isolated(task: Task) -> Result:
    """`run_task` in a process of its own; a process that dies is a crash."""
    try:
        with cf.ProcessPoolExecutor(1) as pool:
            return pool.submit(run_task, task).result()
    except cf.process.BrokenProcessPool:
        program = generate(RandomChooser(task.seed), task.ops, task.style)
        return task, Outcome(failures=[Failure(
            "crash", ",".join(task.devices), "the process died (a crash in native code)")]), \
            0.0, program.reproducer()


@contextlib.contextmanager
def private_caches() -> Iterator[None]:
    """Keep the device-binary caches of a fuzz run out of the user's cache folders: one
    temporary folder for the run (its worker processes inherit it), removed at the end."""
    with tempfile.TemporaryDirectory(prefix="pullback-fuzz-") as folder:
        saved = {k: os.environ.get(k) for k in ("PULLBACK_CACHE_DIR", "POCL_CACHE_DIR")}
        os.environ["PULLBACK_CACHE_DIR"] = folder
        os.environ["POCL_CACHE_DIR"] = os.path.join(folder, "pocl")
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def write_reproducer(folder: Path, task: Task, reproducer: str,
                     failures: list[Failure]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    kinds = sorted({f.kind for f in failures})
    path = folder / f"seed{task.seed}-{'-'.join(kinds)}.py"
    notes = [f"# {f.kind} on {f.device}: {line}" for f in failures
             for line in f.detail.splitlines()[:3]]
    header = [f"# fuzz task: {json.dumps(dataclasses.asdict(task))}",
              f"# regenerate: generate(RandomChooser({task.seed}), {task.ops}, {task.style!r})",
              *notes, ""]
    path.write_text("\n".join(header) + reproducer)
    return path


class Report:
    """Counts over the run, printed as it goes and at the end."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.start = self.last_progress = time.perf_counter()
        self.done = 0
        self.failed_programs = 0
        self.ops = 0
        self.checks: collections.Counter[str] = collections.Counter()
        self.skipped: collections.Counter[str] = collections.Counter()
        self.failures: collections.Counter[str] = collections.Counter()
        self.worker_seconds = 0.0

    def add(self, task: Task, outcome: Outcome, seconds: float, reproducer: str) -> None:
        self.done += 1
        self.ops += task.ops
        self.worker_seconds += seconds
        self.checks.update(c.split()[1] for c in outcome.checked)
        self.skipped.update(s.split(":")[0] for s in outcome.skipped)
        if outcome.failures:
            self.failed_programs += 1
            self.failures.update(f"{f.kind} ({f.device})" for f in outcome.failures)
            path = write_reproducer(self.args.out, task, reproducer, outcome.failures)
            for f in outcome.failures:
                print(f"FAIL seed {task.seed} ({task.ops} ops) {f.kind} on {f.device}: "
                      f"{f.detail.splitlines()[0][:300]}  -> {path}", flush=True)

    def progress(self) -> None:
        self.last_progress = time.perf_counter()
        elapsed = self.last_progress - self.start
        print(f"[{elapsed:7.0f}s] {self.done} programs, {self.failed_programs} failing, "
              f"{self.done / max(elapsed, 1e-9):.2f} programs/s, "
              f"{self.worker_seconds / max(self.done, 1):.2f} CPU s per program", flush=True)

    def summary(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.done / max(elapsed, 1e-9)
        per = self.worker_seconds / max(self.done, 1)
        lines = [
            f"programs tried: {self.done} (devices: {self.args.device}, seed {self.args.seed}, "
            f"ops up to {self.args.max_ops}, mean {self.ops / max(self.done, 1):.1f})",
            f"programs failing: {self.failed_programs}",
            "failures by kind: " + (", ".join(f"{k} {n}" for k, n in
                                              sorted(self.failures.items())) or "none"),
            "checks passed or failed: " + ", ".join(f"{k} {n}" for k, n in
                                                    sorted(self.checks.items())),
            "checks skipped (finite differences unreliable): " + (", ".join(
                f"{k} {n}" for k, n in sorted(self.skipped.items())) or "none"),
            f"time: {elapsed:.0f} s wall, {rate:.2f} programs/s with {self.args.jobs} job(s); "
            f"{self.worker_seconds:.0f} CPU s in workers, {per:.2f} CPU s per program: "
            f"10,000 programs on 2 free cores take {10000 * per / 2 / 60:.0f} min",
        ]
        return "\n".join(lines)


def replay(args: argparse.Namespace) -> int:
    task = task_for(args.replay, args)
    program = generate(RandomChooser(task.seed), task.ops, task.style)
    print(program.reproducer())
    outcome = check_program(program, task.devices, jvp=True, jacobian=True, hessian=True)
    print("checked:", ", ".join(outcome.checked))
    for s in outcome.skipped:
        print("skipped:", s)
    for f in outcome.failures:
        print(f"FAIL {f.kind} on {f.device}: {f.detail}")
    return 1 if outcome.failures else 0


def _task_of(text: str) -> Task | None:
    """The task a reproducer's header records (older headers: every check)."""
    first = text.splitlines()[0] if text else ""
    if first.startswith("# fuzz task: "):
        fields = json.loads(first.removeprefix("# fuzz task: "))
        return Task(**{**fields, "devices": tuple(fields["devices"])})
    found = re.search(r"generate\(RandomChooser\((\d+)\), (\d+), '(\w+)'\)", text)
    devices = re.search(r"devices (\(.*?\))", first)
    if found is None or devices is None:
        return None
    return Task(int(found[1]), int(found[2]), found[3], ast.literal_eval(devices[1]),
                jvp=True, jacobian=True, hessian=True)


def recheck(folder: Path) -> int:
    """Check again every program whose reproducer is in `folder`; say which still fail."""
    still = 0
    for path in sorted(folder.glob("seed*.py")):
        task = _task_of(path.read_text())
        if task is None:
            continue
        outcome = run_task(task)[1]
        still += bool(outcome.failures)
        print(f"{path.name}: " + ("; ".join(f"{f.kind} on {f.device}: {f.detail.splitlines()[0]}"
                                            for f in outcome.failures) or "passes now"),
              flush=True)
    print(f"{still} program(s) still fail")
    return 1 if still else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # a terminated run unwinds, so that the worker pool shuts down with it
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with private_caches():
        if args.replay is not None:
            return replay(args)
        if args.recheck is not None:
            return recheck(args.recheck)
        return run(args)


def run(args: argparse.Namespace) -> int:
    """Fuzz `args.programs` programs in `args.jobs` worker processes; print the report."""
    report = Report(args)
    pending = list(range(args.programs))
    while pending:
        with cf.ProcessPoolExecutor(args.jobs,
                                    max_tasks_per_child=100) as pool:
            running: dict[cf.Future, int] = {}
            try:
                while pending or running:
                    late = args.time_limit and time.perf_counter() - report.start > args.time_limit
                    while pending and len(running) < 2 * args.jobs and not late:
                        k = pending.pop(0)
                        running[pool.submit(run_task, task_for(k, args))] = k
                    if late:
                        pending.clear()
                    if not running:
                        break
                    done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        running.pop(fut)
                        report.add(*fut.result())
                        if time.perf_counter() - report.last_progress > 60:
                            report.progress()
            except cf.process.BrokenProcessPool:
                # a worker died (a crash in native code): rerun what was in flight one
                # program per process to find which; the rest resume in a new pool
                for k in running.values():
                    report.add(*run_isolated(task_for(k, args)))
    print(report.summary(), flush=True)
    return 1 if report.failed_programs else 0


if __name__ == "__main__":
    sys.exit(main())
