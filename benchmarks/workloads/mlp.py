"""`mlp`: loss gradient of a 3-layer tanh MLP with softmax cross-entropy.

Batch 256, layers 784-256-256-10, float32. The loss is the batch mean of
`logsumexp(z) - <z, onehot(label)>` over the logits `z`; the gradient is taken with
respect to every weight and bias, passed as one dict.
"""

from __future__ import annotations

import numpy as np

import pullback as pb
from benchmarks.workload import Problem, Workload

LAYERS = ("1", "2", "3")


def setup(
    batch: int = 256, widths: tuple[int, ...] = (784, 256, 256, 10), dtype: str = "float32"
) -> Problem:
    """Weights ~ N(0, 1/fan_in), small random biases, x ~ N(0, 1), random one-hot labels."""
    if len(widths) != len(LAYERS) + 1:
        raise ValueError(f"widths must list {len(LAYERS) + 1} layer sizes, got {widths}")
    rng = np.random.default_rng(31337)
    params = {}
    for name, fan_in, fan_out in zip(LAYERS, widths[:-1], widths[1:], strict=True):
        scale = 1.0 / np.sqrt(fan_in)
        params["w" + name] = (scale * rng.standard_normal((fan_in, fan_out))).astype(dtype)
        params["b" + name] = (0.1 * rng.standard_normal(fan_out)).astype(dtype)
    x = rng.standard_normal((batch, widths[0])).astype(dtype)
    labels = np.eye(widths[-1], dtype=dtype)[rng.integers(0, widths[-1], batch)]
    return Problem(params=(params,), data=(x, labels), sizes={"batch": batch, "widths": widths})


def objective(params, x, labels):
    """The MLP loss in the DSL."""
    h = pb.tanh(x @ params["w1"] + params["b1"])
    h = pb.tanh(h @ params["w2"] + params["b2"])
    z = h @ params["w3"] + params["b3"]
    return pb.mean(pb.logsumexp(z, axis=1) - pb.sum(z * labels, axis=1))


def adam_step(problem: Problem, lr: float = 1e-3):
    """A training step to compile: `step(*params, x, labels)` takes the loss gradient and
    applies Adam to every weight and bias in place (in sorted name order), returning the
    loss. Returns the step and fresh copies of the parameters it was set up for."""
    (params,) = problem.params
    names = sorted(params)
    arrays = tuple(params[k].copy() for k in names)
    state = pb.optimisers.setup(pb.optimisers.Adam(lr), arrays)

    def step(*args):
        ps, xs, ls = args[:len(names)], args[-2], args[-1]
        loss, grads = pb.withgradient(lambda *p: objective(dict(zip(names, p)), xs, ls), *ps)
        pb.optimisers.update(state, ps, grads)
        return loss

    return step, arrays


def _forward(params: dict[str, np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    """Activations [x, h1, h2, z]."""
    acts = [x]
    for name in LAYERS:
        a = acts[-1] @ params["w" + name] + params["b" + name]
        acts.append(a if name == LAYERS[-1] else np.tanh(a))
    return acts


def _logsumexp(z: np.ndarray) -> np.ndarray:
    top = np.max(z, axis=1, keepdims=True)
    return top[:, 0] + np.log(np.sum(np.exp(z - top), axis=1))


def numpy_objective(params: dict[str, np.ndarray], x: np.ndarray, labels: np.ndarray) -> float:
    z = _forward(params, x)[-1]
    return float(np.mean(_logsumexp(z) - np.sum(z * labels, axis=1)))


def numpy_gradient(
    params: dict[str, np.ndarray], x: np.ndarray, labels: np.ndarray
) -> tuple[dict[str, np.ndarray]]:
    """Backpropagation by hand: softmax minus labels, then tanh layers in reverse."""
    acts = _forward(params, x)
    z = acts[-1]
    probs = np.exp(z - _logsumexp(z)[:, None])
    delta = (probs - labels) / z.shape[0]
    grads: dict[str, np.ndarray] = {}
    for i in reversed(range(len(LAYERS))):
        name = LAYERS[i]
        grads["w" + name] = acts[i].T @ delta
        grads["b" + name] = np.sum(delta, axis=0)
        if i > 0:
            delta = (delta @ params["w" + name].T) * (1 - acts[i] * acts[i])
    return ({key: grads[key] for key in params},)


def jax_objective(params, x, labels):
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    h = jnp.tanh(x @ params["w1"] + params["b1"])
    h = jnp.tanh(h @ params["w2"] + params["b2"])
    z = h @ params["w3"] + params["b3"]
    return jnp.mean(logsumexp(z, axis=1) - jnp.sum(z * labels, axis=1))


WORKLOAD = Workload(
    name="mlp",
    summary="3-layer tanh MLP, batch 256, 784-256-256-10, float32, softmax cross-entropy",
    setup=setup,
    small={"batch": 6, "widths": (5, 4, 3, 3), "dtype": "float64"},
    objective=objective,
    numpy_objective=numpy_objective,
    numpy_gradient=numpy_gradient,
    jax_objective=jax_objective,
    rtol=2e-4,
)
