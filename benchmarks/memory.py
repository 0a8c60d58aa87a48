"""Memory of a compiled MLP gradient, plain and checkpointed: `python benchmarks/memory.py`.

The model is `blocks` blocks of `layers` dense+tanh layers of width `width`, applied to a
float32 batch; the loss is the mean of the squares of the last activation, and the
gradient is taken with respect to every weight and bias (and the input batch). Each
configuration runs in a fresh subprocess, which reports the static memory plan
(`compiled.memory`), the process's resident-memory high-water mark during compilation
and during the gradient calls (both above a baseline taken once the model is built), and
the median time of one gradient call.
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

CONFIGS = ("plain", "checkpointed")
FLOAT_BYTES = 4
DASH = "—"


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
    def parameter_bytes(self) -> int:
        """Bytes of every weight and bias."""
        return self.blocks * self.layers * (self.width + 1) * self.width * FLOAT_BYTES

    def expected_activations(self, config: str) -> int:
        """Activation bytes the gradient should store: one per layer without checkpoints;
        one per block plus one recomputed block's layers with every block checkpointed."""
        if config == "plain":
            return self.blocks * self.layers * self.activation_bytes
        if config == "checkpointed":
            return (self.blocks + self.layers) * self.activation_bytes
        raise ValueError(f"unknown configuration '{config}'; accepted: {', '.join(CONFIGS)}")


DEFAULT = Sizes(blocks=16, layers=4, width=1024, batch=256)
SMALL = Sizes(blocks=4, layers=2, width=64, batch=16)

Model = list[list[dict[str, np.ndarray]]]


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


LOSSES: dict[str, Callable[[Model, Any], Any]] = {
    "plain": plain_loss,
    "checkpointed": checkpointed_loss,
}


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


def measure_config(config: str, sizes: Sizes, steps: int, device: str) -> dict[str, Any]:
    """Compile and run one configuration in this process; bytes are above the resident
    size once the model is built."""
    if config not in LOSSES:
        raise ValueError(f"unknown configuration '{config}'; accepted: {', '.join(CONFIGS)}")
    model, x = make_model(sizes)
    baseline, _ = process_memory()
    resettable = reset_peak()
    start = time.perf_counter()
    compiled = pb.compile(LOSSES[config], model, x, mode="gradient", device=device)
    compile_s = time.perf_counter() - start
    after_compile, compile_peak = process_memory()
    reset_peak()
    timing = measure(lambda: compiled(model, x), repeat=steps)
    after_steps, steps_peak = process_memory()
    plan = compiled.memory
    return {
        "config": config,
        "plan": {field: int(getattr(plan, field)) for field in
                 ("peak_bytes", "inputs", "outputs", "temporaries", "unplanned_bytes")},
        "rss_compile_peak": compile_peak - baseline,
        "rss_after_compile": after_compile - baseline,
        "rss_steps_peak": steps_peak - baseline,
        "rss_after_steps": after_steps - baseline,
        "peak_resettable": resettable,
        "baseline": baseline,
        "compile_s": compile_s,
        "seconds": list(timing.runs),
        "median_s": timing.median,
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


def _ratio(top: float | None, bottom: float | None) -> str:
    return DASH if top is None or not bottom else f"{top / bottom:.2f}"


HEADER = ("config", "expected activations", "plan temporaries", "plan peak",
          "plan outputs+temps", "RSS compile", "RSS steps", "RSS call growth", "time / call",
          "compile")


def _numbers(result: dict[str, Any], sizes: Sizes) -> list[float | None]:
    """The table's numeric cells for one configuration (None where it failed)."""
    expected = float(sizes.expected_activations(result["config"]))
    if "error" in result:
        return [expected] + [None] * (len(HEADER) - 2)
    plan = result["plan"]
    return [expected, plan["temporaries"], plan["peak_bytes"],
            plan["outputs"] + plan["temporaries"], result["rss_compile_peak"],
            result["rss_steps_peak"], result["rss_steps_peak"] - result["rss_after_compile"],
            result["median_s"], result["compile_s"]]


def render(results: list[dict[str, Any]], sizes: Sizes) -> str:
    """A markdown table: one row per configuration, then checkpointed/plain ratios."""
    numbers = {r["config"]: _numbers(r, sizes) for r in results}
    times = len(HEADER) - 3
    body = [HEADER]
    for config, values in numbers.items():
        body.append((config, *(_bytes(v) for v in values[:times]),
                     *(_time(v) for v in values[times:])))
    if "plain" in numbers and "checkpointed" in numbers:
        body.append(("checkpointed / plain", *(
            _ratio(c, p) for c, p in zip(numbers["checkpointed"], numbers["plain"]))))
    widths = [max(len(row[i]) for row in body) for i in range(len(HEADER))]

    def line(values: tuple[str, ...]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    text = [line(body[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    text += [line(row) for row in body[1:]]
    text += [f"{r['config']}: {r['error']}" for r in results if "error" in r]
    return "\n".join(text)


def arithmetic(sizes: Sizes) -> str:
    """The expected stored-activation bytes, spelled out."""
    a, n, b, lay = sizes.activation_bytes, sizes.blocks * sizes.layers, sizes.blocks, sizes.layers
    return (f"one activation = batch x width x 4 B = {sizes.batch} x {sizes.width} x 4 B = "
            f"{_bytes(a)}; plain stores one per layer: {n} x {_bytes(a)} = {_bytes(n * a)}; "
            f"checkpointed stores one per block plus one block's layers while it is "
            f"recomputed: ({b} + {lay}) x {_bytes(a)} = {_bytes((b + lay) * a)}; weights and "
            f"biases (inputs, and again as gradient outputs): {_bytes(sizes.parameter_bytes)}")


NOTES = (
    "RSS columns: resident-memory high-water mark above the resident size once the model "
    "and batch exist (so inputs are not counted), during compilation and during the "
    "gradient calls; `RSS call growth` is the steps' high-water mark above the resident "
    "size after compiling: compare it with `plan outputs+temps`.",
    "eager_update is not built yet, so its configurations (alone and with checkpointed) "
    "are not in this table.",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, help=f"blocks (default {DEFAULT.blocks})")
    parser.add_argument("--layers", type=int, help=f"layers per block (default {DEFAULT.layers})")
    parser.add_argument("--width", type=int, help=f"layer width (default {DEFAULT.width})")
    parser.add_argument("--batch", type=int, help=f"batch size (default {DEFAULT.batch})")
    parser.add_argument("--steps", type=int, default=5, help="timed gradient calls (median)")
    parser.add_argument("--device", default="cpu", help="pullback device (cpu or opencl)")
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
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.child:
        result = measure_config(args.child, args.sizes, args.steps, args.device)
        print(json.dumps(result))
        return [result]
    s = args.sizes
    results = [run_child(config, s, args.steps, args.device) for config in CONFIGS]
    print(f"pullback gradient memory: {s.blocks} blocks x {s.layers} dense+tanh layers, width "
          f"{s.width}, batch {s.batch}, float32, device {args.device}; {os.cpu_count()} "
          f"cores; time is the median of {args.steps} calls")
    print(render(results, s))
    print(arithmetic(s))
    for note in NOTES:
        print(note)
    return results


if __name__ == "__main__":
    main()
