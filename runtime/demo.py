"""`pullback demo`: train a handwritten-digit classifier with compiled training steps.

The data are the 1797 8x8 images of digits that ship inside scikit-learn (no
download), split once into a training and a test set. The model is an MLP: a list of
dense+tanh blocks and a linear output layer under a softmax cross-entropy loss.

Each training step is one compiled call. The parameters of every block, and of the
output layer, pass through `pb.eager_update`, so their Adam step runs inside the
backward pass as soon as their gradient is complete, and every block is
`pb.checkpointed`, so its inner activations are recomputed in the backward pass
instead of stored. The demo shows a
progress bar with the loss, then the test accuracy, the compile time, the steps per
second, and the planned peak memory of one step with and without checkpointing and
eager updates.

The arrays are float64. The model is small, so the precision costs little, and it makes
a compiled step checkable against an independent numpy step to 1e-10: Adam's first step
moves each parameter by about `lr * g / |g|`, which in float32 turns the rounding of a
near-zero gradient into an error as large as the step itself.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

import pullback as pb
from pullback.devices import resolve
from pullback.dsl.pytree import flatten

INSTALL = 'pip install "scikit-learn>=1.3"'
"""The command that installs the demo's one extra dependency."""

DTYPE = np.float64
BLOCKS = 3
"""Blocks before the output layer; each is the unit of checkpointing and of eager updates."""
LAYERS = 2
"""Dense+tanh layers per block: checkpointing a block stores its input, not its inner
activations."""
SPLIT_SEED = 0
"""Seed of the train/test split: the same test set for every `--seed`."""
TEST_FRACTION = 0.2
VARIANTS = {"plain": (False, False), "checkpointed": (True, False),
            "eager update": (False, True), "both": (True, True)}
"""Memory-table rows: name -> (checkpointed blocks, eager updates)."""
BAR = 30
"""Cells of the progress bar."""

Model = dict[str, Any]
Loss = Callable[[Model, np.ndarray, np.ndarray], Any]


class DemoUnavailable(RuntimeError):
    """The demo cannot run: a dependency is missing (the message says how to install it)."""


@dataclasses.dataclass(frozen=True)
class Digits:
    """Standardised images (n, 64), one-hot training labels (n, 10), test labels (n,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    labels_test: np.ndarray


@dataclasses.dataclass(frozen=True)
class StepMemory:
    """The planned memory of one training step.

    `report` is the compiled step's `MemoryReport`. Its `inputs` hold the optimiser
    state only where the update is compiled into the step, so variants are compared by
    `peak`: the arrays every variant holds (`held`: model, optimiser state, batch) plus
    what the step itself allocates (`step`: outputs, gradients, residuals, scratch).
    """

    held: int
    report: Any

    @property
    def step(self) -> int:
        """Bytes the step needs beyond its inputs."""
        return self.report.peak_bytes - self.report.inputs

    @property
    def peak(self) -> int:
        """Bytes live during a step, the optimiser state included."""
        return self.held + self.step


@dataclasses.dataclass(frozen=True)
class Result:
    """What a demo run measured."""

    losses: list[float]
    """Mean training loss of each epoch."""
    accuracy: float
    compile_seconds: float
    steps_per_second: float
    memory: dict[str, StepMemory]
    """Variant name (the keys of `VARIANTS`) -> the planned memory of its step."""


def digits() -> Digits:
    """scikit-learn's digits, split 80/20 with a fixed seed and standardised with the
    training set's mean and standard deviation (pixels constant there are only centred)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DemoUnavailable(
            "the demo trains on the digits dataset that ships with scikit-learn, which is "
            f"not installed; install it with: {INSTALL}  (or, in a checkout of pullback: "
            'pip install -e ".[demo]")') from e
    data = load_digits()
    x, labels = data.data.astype(DTYPE), data.target
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_test = round(TEST_FRACTION * len(x))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    x = (x - mean) / np.where(std > 0, std, 1.0)
    onehot = np.eye(10, dtype=DTYPE)[labels]
    return Digits(x[train], onehot[train], x[test], labels[test])


def init_model(rng: np.random.Generator, n_in: int, width: int, n_out: int) -> Model:
    """`{"blocks": [[layer, layer], ...], "out": layer}`, each layer `{"W", "b"}` with
    W ~ N(0, 1/fan_in) and b = 0."""
    def dense(fan_in: int, fan_out: int) -> dict[str, np.ndarray]:
        w = rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
        return {"W": w.astype(DTYPE), "b": np.zeros(fan_out, DTYPE)}

    sizes = [n_in] + [width] * (BLOCKS * LAYERS)
    layers = [dense(a, b) for a, b in zip(sizes, sizes[1:])]
    return {"blocks": [layers[i:i + LAYERS] for i in range(0, len(layers), LAYERS)],
            "out": dense(width, n_out)}


def block(layers: list[dict[str, Any]], h: Any) -> Any:
    """One block: `LAYERS` dense+tanh layers."""
    for layer in layers:
        h = pb.tanh(h @ layer["W"] + layer["b"])
    return h


def logits(model: Model, x: Any) -> Any:
    """The network's output scores (n, 10)."""
    h = x
    for layers in model["blocks"]:
        h = block(layers, h)
    return h @ model["out"]["W"] + model["out"]["b"]


def make_loss(state: Any, checkpointed: bool = True, eager: bool = True) -> Loss:
    """Mean softmax cross-entropy of `model` on a batch.

    With `eager`, each layer goes through `pb.eager_update(state..., layer,
    pb.optimisers.update)`, so differentiating the loss trains the model in place;
    with `checkpointed`, each block is recomputed in the backward pass. The data are
    not differentiated.
    """
    def loss(model: Model, x: Any, y: Any) -> Any:
        h, y = pb.ignore_derivatives(x), pb.ignore_derivatives(y)
        for i, layers in enumerate(model["blocks"]):
            if eager:
                layers = pb.eager_update(state["blocks"][i], layers, pb.optimisers.update)
            h = pb.checkpointed(block, layers, h) if checkpointed else block(layers, h)
        out = model["out"]
        if eager:
            out = pb.eager_update(state["out"], out, pb.optimisers.update)
        z = h @ out["W"] + out["b"]
        return pb.mean(pb.logsumexp(z, axis=1) - pb.sum(z * y, axis=1))

    return loss


def nbytes(tree: Any) -> int:
    """Bytes of the numpy arrays in a pytree."""
    leaves, _ = flatten(tree)
    return sum(leaf.nbytes for leaf in leaves if isinstance(leaf, np.ndarray))


def memory_table(model: Model, state: Any, x: np.ndarray, y: np.ndarray,
                 device: str | None = None) -> dict[str, StepMemory]:
    """The planned memory of one training step of each of `VARIANTS`, each compiled."""
    held = nbytes((model, state, x, y))
    return {name: StepMemory(held, pb.compile(make_loss(state, ck, eager), model, x, y,
                                              mode="withgradient", device=device).memory)
            for name, (ck, eager) in VARIANTS.items()}


def size(n: float) -> str:
    """A byte count in KiB or MiB."""
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def bar(epoch: int, epochs: int, done: int, total: int, loss: float) -> str:
    """One progress line: epoch, an ASCII bar of `done`/`total` steps, the running loss."""
    full = BAR * done // total
    width = len(str(epochs))
    return (f"epoch {epoch:{width}d}/{epochs} [{'#' * full}{'.' * (BAR - full)}] "
            f"{done:4d}/{total} steps  loss {loss:.4f}")


def run(epochs: int = 20, batch: int = 64, width: int = 128, seed: int = 0, lr: float = 1e-3,
        device: str | None = None, out: TextIO | None = None) -> Result:
    """Train, evaluate and report on `out` (standard output by default).

    Raises `DemoUnavailable` without scikit-learn, `ValueError` for a bad setting.
    """
    out = sys.stdout if out is None else out
    for name, value in [("epochs", epochs), ("batch", batch), ("width", width)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"the learning rate must be positive, got {lr!r}")
    device = resolve(device)
    data = digits()
    n_train = len(data.x_train)
    if batch > n_train:
        raise ValueError(f"batch must be at most the {n_train} training images, got {batch}")
    rng = np.random.default_rng(seed)
    model = init_model(rng, data.x_train.shape[1], width, data.y_train.shape[1])
    state = pb.optimisers.setup(pb.optimisers.Adam(lr), model)
    print(f"digits: {n_train} training and {len(data.x_test)} test images, 8x8 pixels, "
          "10 classes", file=out)
    print(f"MLP: {BLOCKS} blocks of {LAYERS} dense+tanh layers (width {width}) + softmax; "
          f"Adam lr {lr:g}; batch {batch}; device {device}", file=out)
    xb, yb = data.x_train[:batch], data.y_train[:batch]
    step = pb.compile(make_loss(state), model, xb, yb, mode="withgradient", device=device)
    compile_seconds = step.timings["trace"] + step.timings["compile"]
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    # The products are small (batch x width): extra BLAS threads only contend for cores.
    with threadpool_limits(limits=1, user_api="blas"):
        losses, steps_per_second = train(step, model, data, batch, epochs, rng, out)
    forward = pb.compile(logits, model, data.x_test, mode="value", device=device)
    predicted = np.argmax(forward(model, data.x_test), axis=1)
    accuracy = float(np.mean(predicted == data.labels_test))
    memory = memory_table(model, state, xb, yb, device)
    result = Result(losses, accuracy, compile_seconds, steps_per_second, memory)
    _report(result, out)
    return result


def train(step: pb.Compiled, model: Model, data: Digits, batch: int, epochs: int,
          rng: np.random.Generator, out: TextIO) -> tuple[list[float], float]:
    """Call `step(model, images, labels)` on shuffled batches for `epochs` passes.

    Shows progress on `out`: on a terminal one line per epoch, redrawn (carriage return)
    as the bar grows; otherwise one line per finished epoch. Returns the mean loss of
    each epoch and the training steps per second.
    """
    per_epoch = len(data.x_train) // batch       # the last partial batch is dropped
    tty = out.isatty()
    losses, seconds = [], 0.0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(data.x_train))
        total, shown = 0.0, -1
        start = time.perf_counter()
        for k in range(per_epoch):
            idx = order[k * batch:(k + 1) * batch]
            total += float(step(model, data.x_train[idx], data.y_train[idx]).val)
            if tty and (k + 1) * BAR // per_epoch != shown:   # redraw when the bar grows
                shown = (k + 1) * BAR // per_epoch
                print("\r" + bar(epoch, epochs, k + 1, per_epoch, total / (k + 1)),
                      end="", file=out, flush=True)
        seconds += time.perf_counter() - start
        losses.append(total / per_epoch)
        line = bar(epoch, epochs, per_epoch, per_epoch, losses[-1])
        print("\r" + line if tty else line, file=out, flush=True)
    return losses, epochs * per_epoch / seconds


def _report(result: Result, out: TextIO) -> None:
    print(f"test accuracy: {result.accuracy:.1%}", file=out)
    print(f"compile time: {result.compile_seconds:.2f} s (once, ahead of the first step)",
          file=out)
    print(f"steps per second: {result.steps_per_second:.0f} (one compiled call each: "
          "forward, backward, Adam update)", file=out)
    memory = result.memory
    plain = memory["plain"]
    print(f"planned peak memory of one step: {size(plain.held)} held (model, Adam state, "
          "batch) + the step's own", file=out)
    print(f"  {'variant':<14}{'peak':>11}{'vs plain':>10}{'gradients':>12}{'residuals':>12}"
          f"{'scratch':>12}", file=out)
    for name, m in memory.items():
        saving = "" if name == "plain" else f"{m.peak / plain.peak - 1:+.0%}"
        print(f"  {name:<14}{size(m.peak):>11}{saving:>10}{size(m.report.gradients):>12}"
              f"{size(m.report.residuals):>12}{size(m.report.scratch):>12}", file=out)
