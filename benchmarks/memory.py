"""Memory of a compiled MLP gradient: plain, checkpointed, eager update, and both.

Run `python benchmarks/memory.py` (`--help` for the options). The model is `blocks`
blocks of `layers` dense+tanh layers of width `width`, applied to a float32 batch; the
loss is the mean of the squares of the last activation, and the gradient is taken with
respect to every weight and bias (and the input batch). Four configurations: `plain`;
`checkpointed` (every block in `pb.checkpointed`); `eager` (every block's parameters
through `pb.eager_update` with `pb.optimisers.Descent`, so the backward pass updates them
in place and returns no gradient for them); `both` (eager update and checkpointed
blocks). Each configuration runs in a fresh subprocess, which reports the static memory
plan (`compiled.memory`), the process's resident-memory high-water mark during
compilation and during the gradient calls (both above a baseline taken once the model is
built), and the median and best time of one gradient call; the report sets them next to
what the model's sizes lead one to expect.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pullback as pb  # noqa: E402
from benchmarks.timing import measure  # noqa: E402

CONFIGS = ("plain", "checkpointed", "eager", "both")
CHECKPOINTED = ("checkpointed", "both")
EAGER = ("eager", "both")
LEARNING_RATE = 1e-3
PLAN_FIELDS = ("peak_bytes", "inputs", "outputs", "temporaries", "unplanned_bytes")
BREAKDOWN = ("gradients", "residuals", "scratch")
"""Finer fields a `MemoryReport` may give, reported when present: the returned gradients
(then not in `outputs`), and the two parts of `temporaries`."""
RECOMPUTE_COST = 4 / 3
"""Checkpointed / plain work: a layer's forward is one matrix product, its backward two
(weight and input gradients); recomputing every block adds one forward."""
FLOAT_BYTES = 4
DASH = "—"


def _check_config(config: str) -> None:
    if config not in CONFIGS:
        raise ValueError(f"unknown configuration '{config}'; accepted: {', '.join(CONFIGS)}")


@dataclass(frozen=True)
class Sizes:
    """The shape of the benchmark model and its input batch."""

    blocks: int
    layers: int
    width: int
    batch: int

    @property
    def activation_bytes(self) -> int:
        """Bytes of one layer's activation: batch x width float32."""
        return self.batch * self.width * FLOAT_BYTES

    @property
    def block_parameter_bytes(self) -> int:
        """Bytes of one block's weights and biases."""
        return self.layers * (self.width + 1) * self.width * FLOAT_BYTES

    @property
    def layer_parameter_bytes(self) -> int:
        """Bytes of one layer's weights and biases."""
        return (self.width + 1) * self.width * FLOAT_BYTES

    @property
    def parameter_bytes(self) -> int:
        """Bytes of every weight and bias."""
        return self.blocks * self.block_parameter_bytes

    def expected_activations(self, config: str) -> int:
        """Activation bytes the gradient should store: one per layer without checkpoints;
        one per block plus one recomputed block's layers with every block checkpointed."""
        _check_config(config)
        if config in CHECKPOINTED:
            return (self.blocks + self.layers) * self.activation_bytes
        return self.blocks * self.layers * self.activation_bytes

    def expected_residuals(self, config: str) -> int:
        """Activation bytes the backward part reads from the forward part: one per layer
        without checkpoints, one per block (its input) with every block checkpointed; a
        block's recomputed layers are the backward part's own."""
        _check_config(config)
        per_layer = 1 if config in CHECKPOINTED else self.layers
        return self.blocks * per_layer * self.activation_bytes

    def expected_temporaries(self, config: str) -> int:
        """The stored activations, and with eager update one layer's parameter gradients:
        each layer's update runs as soon as its gradient is complete and its old weights
        have been read (the `schedule-writes` pass), and consumes them."""
        held = self.layer_parameter_bytes if config in EAGER else 0
        return self.expected_activations(config) + held

    def expected_parameter_gradients(self, config: str) -> int:
        """Parameter-gradient bytes a call returns: all of them, or none with eager update."""
        _check_config(config)
        return 0 if config in EAGER else self.parameter_bytes


DEFAULT = Sizes(blocks=16, layers=4, width=1024, batch=256)
SMALL = Sizes(blocks=4, layers=2, width=64, batch=16)

Model = list[list[dict[str, np.ndarray]]]
Loss = Callable[[Model, Any], Any]


def make_model(sizes: Sizes, seed: int = 0) -> tuple[Model, np.ndarray]:
    """Random float32 weights (scaled so tanh stays away from saturation), zero biases,
    and a random input batch."""
    rng = np.random.default_rng(seed)
    scale = np.float32(1.0 / np.sqrt(sizes.width))

    def layer() -> dict[str, np.ndarray]:
        w = rng.standard_normal((sizes.width, sizes.width), dtype=np.float32) * scale
        return {"W": w, "b": np.zeros(sizes.width, np.float32)}

    model = [[layer() for _ in range(sizes.layers)] for _ in range(sizes.blocks)]
    x = rng.standard_normal((sizes.batch, sizes.width), dtype=np.float32)
    return model, x


def block(layers: list[dict[str, Any]], h: Any) -> Any:
    """One block: `layers` dense+tanh layers."""
    for layer in layers:
        h = pb.tanh(h @ layer["W"] + layer["b"])
    return h


def plain_loss(model: Model, x: Any) -> Any:
    """Mean square of the last activation; reverse mode stores every layer's output."""
    h = x
    for layers in model:
        h = block(layers, h)
    return pb.mean(h * h)


def checkpointed_loss(model: Model, x: Any) -> Any:
    """The same loss with every block checkpointed: only block inputs are stored."""
    h = x
    for layers in model:
        h = pb.checkpointed(block, layers, h)
    return pb.mean(h * h)


def eager_loss(state: Any) -> Loss:
    """The plain loss with each block's parameters updated in the backward pass by the
    optimiser `state` (from `pb.optimisers.setup`)."""
    def loss(model: Model, x: Any) -> Any:
        h = x
        for i, layers in enumerate(model):
            layers = pb.eager_update(state[i], layers, pb.optimisers.update)
            h = block(layers, h)
        return pb.mean(h * h)

    return loss


def both_loss(state: Any) -> Loss:
    """Eager update of every block's parameters, and every block checkpointed."""
    def loss(model: Model, x: Any) -> Any:
        h = x
        for i, layers in enumerate(model):
            layers = pb.eager_update(state[i], layers, pb.optimisers.update)
            h = pb.checkpointed(block, layers, h)
        return pb.mean(h * h)

    return loss


def make_loss(config: str, model: Model, lr: float = LEARNING_RATE) -> Loss:
    """The loss of `config`; the eager ones update `model` by `pb.optimisers.Descent(lr)`."""
    _check_config(config)
    if config in EAGER:
        state = pb.optimisers.setup(pb.optimisers.Descent(lr), model)
        return (eager_loss if config == "eager" else both_loss)(state)
    return plain_loss if config == "plain" else checkpointed_loss


def process_memory() -> tuple[int, int]:
    """(resident bytes now, resident high-water mark in bytes) of this process."""
    status = Path("/proc/self/status")
    if status.exists():
        fields = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status.read_text(), re.M))
        if len(fields) == 2:
            return int(fields["VmRSS"]) * 1024, int(fields["VmHWM"]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return peak, peak


def reset_peak() -> bool:
    """Restart the high-water mark at the current resident size (Linux); False if the
    system does not allow it, in which case the mark keeps every earlier peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def host_calls(compiled: Any) -> int:
    """The number of `ad.callback_grad` host calls in the compiled program (eager updates
    that run on the host rather than in compiled code)."""
    return max((text.count("ad.callback_grad") for text in compiled.stages.values()), default=0)


def measure_config(config: str, sizes: Sizes, steps: int, device: str) -> dict[str, Any]:
    """Compile and run one configuration in this process; bytes are above the resident
    size once the model is built."""
    _check_config(config)
    model, x = make_model(sizes)
    loss = make_loss(config, model)
    baseline, _ = process_memory()
    resettable = reset_peak()
    start = time.perf_counter()
    compiled = pb.compile(loss, model, x, mode="gradient", device=device)
    compile_s = time.perf_counter() - start
    after_compile, compile_peak = process_memory()
    reset_peak()
    timing = measure(lambda: compiled(model, x), repeat=steps)
    after_steps, steps_peak = process_memory()
    plan = compiled.memory
    fields = {name: getattr(plan, name, None) for name in PLAN_FIELDS + BREAKDOWN}
    return {
        "config": config,
        "plan": {name: int(value) for name, value in fields.items() if value is not None},
        "host_calls": host_calls(compiled),
        "rss_compile_peak": compile_peak - baseline,
        "rss_after_compile": after_compile - baseline,
        "rss_steps_peak": steps_peak - baseline,
        "rss_after_steps": after_steps - baseline,
        "peak_resettable": resettable,
        "baseline": baseline,
        "compile_s": compile_s,
        "seconds": list(timing.runs),
        "median_s": timing.median,
        "best_s": timing.best,
    }


def run_child(config: str, sizes: Sizes, steps: int, device: str) -> dict[str, Any]:
    """`measure_config` in a fresh Python process; an `error` entry when it fails."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", config,
               "--blocks", str(sizes.blocks), "--layers", str(sizes.layers),
               "--width", str(sizes.width), "--batch", str(sizes.batch),
               "--steps", str(steps), "--device", device]
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return {"config": config, "error": reason}
    return json.loads(lines[-1])


# -- the report ---------------------------------------------------------------------------


def _bytes(n: float | None) -> str:
    if n is None:
        return DASH
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _time(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    return f"{seconds:.3g} s" if seconds >= 1 else f"{seconds * 1e3:.3g} ms"


def _number(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}"


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return None if top is None or not bottom else top / bottom


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def markdown(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A markdown table with aligned columns."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(values: tuple[str, ...]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(row) for row in rows)])


class Results:
    """The measurements of every configuration that ran, by name."""

    def __init__(self, results: list[dict[str, Any]]):
        self.all = results
        self.ok = {r["config"]: r for r in results if "error" not in r}

    def plan(self, config: str, name: str) -> float | None:
        result = self.ok.get(config)
        return None if result is None else result["plan"].get(name)

    def returned(self, config: str) -> float | None:
        """Bytes a call returns: `outputs`, plus `gradients` where the plan separates them."""
        outputs = self.plan(config, "outputs")
        return None if outputs is None else outputs + (self.plan(config, "gradients") or 0)

    def get(self, config: str, name: str) -> float | None:
        result = self.ok.get(config)
        return None if result is None else result[name]

    def call_growth(self, config: str) -> float | None:
        """The high-water mark of the calls above the resident size after compiling."""
        return _difference(self.get(config, "rss_steps_peak"),
                           self.get(config, "rss_after_compile"))

    def breakdown(self) -> tuple[str, ...]:
        """The fields of `BREAKDOWN` that some configuration's plan reports."""
        return tuple(name for name in BREAKDOWN
                     if any(name in r["plan"] for r in self.ok.values()))


def plan_table(results: Results) -> str:
    """Bytes of every configuration's memory plan, and its count of eager host calls."""
    parts = results.breakdown()
    returned = tuple(p for p in parts if p == "gradients")
    arena = tuple(p for p in parts if p != "gradients")
    names = ("peak_bytes", "inputs", "outputs", *returned, "temporaries", *arena,
             "unplanned_bytes")
    header = ("config", "plan peak", *names[1:-1], "unplanned", "host calls")
    rows = []
    for r in results.all:
        c = r["config"]
        calls = results.get(c, "host_calls")
        rows.append((c, *(_bytes(results.plan(c, n)) for n in names),
                     DASH if calls is None else str(calls)))
    return markdown(header, rows)


def measured_table(results: Results) -> str:
    """Resident memory and time of every configuration's process."""
    header = ("config", "plan peak - inputs", "RSS compile", "RSS steps", "RSS call growth",
              "time / call", "best call", "compile")
    rows = []
    for r in results.all:
        c = r["config"]
        planned = _difference(results.plan(c, "peak_bytes"), results.plan(c, "inputs"))
        rows.append((c, _bytes(planned), _bytes(results.get(c, "rss_compile_peak")),
                     _bytes(results.get(c, "rss_steps_peak")), _bytes(results.call_growth(c)),
                     *(_time(results.get(c, k)) for k in ("median_s", "best_s", "compile_s"))))
    return markdown(header, rows)


def expectations_table(results: Results, sizes: Sizes) -> str:
    """What the issue expects, from the model's sizes, next to the plan and the process."""
    header = ("expectation", "expected", "plan", "plan / expected", "measured",
              "measured / expected")
    rows = []

    def add(what: str, expected: float, plan: float | None, measured: float | None,
            show: Callable[[float | None], str]) -> None:
        rows.append((what, show(expected), show(plan), _number(_ratio(plan, expected)),
                     show(measured), _number(_ratio(measured, expected))))

    fields = [("temporaries", sizes.expected_temporaries)]
    if "residuals" in results.breakdown():
        fields.append(("residuals", sizes.expected_residuals))
    for name, expected in fields:
        for c in CONFIGS:
            add(f"{name}, {c}", expected(c), results.plan(c, name), None, _bytes)
        for small, big in (("checkpointed", "plain"), ("both", "eager")):
            add(f"{name}, {small} / {big}", expected(small) / expected(big),
                _ratio(results.plan(small, name), results.plan(big, name)), None, _number)
    for c in CONFIGS:
        add(f"returned bytes, {c}", FLOAT_BYTES + sizes.activation_bytes
            + sizes.expected_parameter_gradients(c), results.returned(c), None, _bytes)
    for eager, base in (("eager", "plain"), ("both", "checkpointed")):
        add(f"parameter gradients off the peak, {base} - {eager}",
            sizes.parameter_bytes - sizes.layer_parameter_bytes,
            _difference(results.plan(base, "peak_bytes"), results.plan(eager, "peak_bytes")),
            _difference(results.call_growth(base), results.call_growth(eager)), _bytes)
    for slow, fast in (("checkpointed", "plain"), ("both", "eager")):
        add(f"best call time, {slow} / {fast}", RECOMPUTE_COST, None,
            _ratio(results.get(slow, "best_s"), results.get(fast, "best_s")), _number)
    return markdown(header, rows)


def render(results: list[dict[str, Any]], sizes: Sizes) -> str:
    """The three tables (plan, process, expectations) and any configuration's error."""
    table = Results(results)
    text = [plan_table(table), "", measured_table(table), "",
            expectations_table(table, sizes)]
    text += [f"{r['config']}: {r['error']}" for r in results if "error" in r]
    return "\n".join(text)


def arithmetic(sizes: Sizes) -> str:
    """The expected bytes, spelled out."""
    a, n, b, lay = sizes.activation_bytes, sizes.blocks * sizes.layers, sizes.blocks, sizes.layers
    return (f"one activation = batch x width x 4 B = {sizes.batch} x {sizes.width} x 4 B = "
            f"{_bytes(a)}; plain stores one per layer: {n} x {_bytes(a)} = {_bytes(n * a)}; "
            f"checkpointed stores one per block (its input: the residuals) plus one block's "
            f"layers while it is recomputed: ({b} + {lay}) x {_bytes(a)} = "
            f"{_bytes((b + lay) * a)}; weights and "
            f"biases: {n} x ({sizes.width} + 1) x {sizes.width} x 4 B = "
            f"{_bytes(sizes.parameter_bytes)}, inputs of every configuration; a call "
            f"returns the loss (4 B), the batch's gradient (one activation) and, plain and "
            f"checkpointed, the parameter gradients; eager update returns none of those, "
            f"and holds at most one layer's ({_bytes(sizes.layer_parameter_bytes)}) until "
            f"that layer's update; checkpointing recomputes one forward pass: "
            f"(1 + 1 + 2) / (1 + 2) = {RECOMPUTE_COST:.2f} x the matrix-product work")


NOTES = (
    "RSS columns: resident-memory high-water mark above the resident size once the model "
    "and batch exist (so inputs are not counted), during compilation and during the "
    "gradient calls; `RSS call growth` is the steps' high-water mark above the resident "
    "size after compiling: compare it with `plan peak - inputs`.",
    "host calls: `ad.callback_grad` host calls in the compiled program: one per eagerly "
    "updated array when the update runs on the host, none when it is compiled into the "
    "backward pass.",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, help=f"blocks (default {DEFAULT.blocks})")
    parser.add_argument("--layers", type=int, help=f"layers per block (default {DEFAULT.layers})")
    parser.add_argument("--width", type=int, help=f"layer width (default {DEFAULT.width})")
    parser.add_argument("--batch", type=int, help=f"batch size (default {DEFAULT.batch})")
    parser.add_argument("--steps", type=int, default=5, help="timed gradient calls (median)")
    parser.add_argument("--device", default="cpu", help="pullback device (cpu or opencl)")
    parser.add_argument("--only", action="append", choices=CONFIGS,
                        help="run only this configuration (repeatable)")
    parser.add_argument("--small", action="store_true",
                        help=f"a quick smoke run: defaults {SMALL} instead of {DEFAULT}")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    base = SMALL if args.small else DEFAULT
    args.sizes = Sizes(*(getattr(base, name) if getattr(args, name) is None else getattr(args, name)
                         for name in ("blocks", "layers", "width", "batch")))
    for name, value in vars(args.sizes).items():
        if value < 1:
            parser.error(f"--{name} must be at least 1, got {value}")
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    args.configs = [c for c in CONFIGS if args.only is None or c in args.only]
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.child:
        result = measure_config(args.child, args.sizes, args.steps, args.device)
        print(json.dumps(result))
        return [result]
    s = args.sizes
    load = os.getloadavg()[0]
    results = [run_child(config, s, args.steps, args.device) for config in args.configs]
    print(f"pullback gradient memory: {s.blocks} blocks x {s.layers} dense+tanh layers, width "
          f"{s.width}, batch {s.batch}, float32, device {args.device}; {os.cpu_count()} "
          f"cores, load average {load:.1f} before the run and {os.getloadavg()[0]:.1f} after "
          f"(other processes slow the times); time is the median of {args.steps} calls")
    print(render(results, s))
    print(arithmetic(s))
    for note in NOTES:
        print(note)
    return results


if __name__ == "__main__":
    main()
