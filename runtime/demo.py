"""`pullback demo`: train a small classifier through compiled gradients.

A tanh network trained by gradient descent with momentum learns to classify the
points of two interleaved spirals. The loss and its gradient are one compiled
native call per step; the demo prints the loss going down, checks the gradient
against central finite differences, and reports compile time and time per step.
"""

from __future__ import annotations

import time

import numpy as np

import pullback as pb


def spirals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals: points (n, 2) and one-hot labels (n, 2)."""
    t = np.sqrt(rng.uniform(0.05, 1.0, n)) * 3 * np.pi
    label = rng.integers(0, 2, n)
    sign = np.where(label == 0, 1.0, -1.0)
    x = np.stack([sign * t * np.cos(t), sign * t * np.sin(t)], axis=1) / (3 * np.pi)
    x += rng.normal(scale=0.02, size=x.shape)
    return x, np.eye(2)[label]


def loss(params: dict, x: np.ndarray, y: np.ndarray):
    """Mean softmax cross-entropy of a 2-hidden-layer tanh network."""
    h = pb.tanh(x @ params["w1"] + params["b1"])
    h = pb.tanh(h @ params["w2"] + params["b2"])
    logits = h @ params["w3"] + params["b3"]
    return pb.mean(pb.logsumexp(logits, axis=1) - pb.sum(logits * y, axis=1))


def accuracy(params: dict, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of points classified right (the network run eagerly with numpy)."""
    h = np.tanh(x @ params["w1"] + params["b1"])
    h = np.tanh(h @ params["w2"] + params["b2"])
    logits = h @ params["w3"] + params["b3"]
    return float(np.mean(logits.argmax(1) == y.argmax(1)))


def init(rng: np.random.Generator, width: int = 32) -> dict:
    def dense(n_in: int, n_out: int) -> np.ndarray:
        return rng.normal(scale=1 / np.sqrt(n_in), size=(n_in, n_out))

    return {"w1": dense(2, width), "b1": np.zeros(width), "w2": dense(width, width),
            "b2": np.zeros(width), "w3": dense(width, 2), "b3": np.zeros(2)}


def gradient_check(params: dict, x: np.ndarray, y: np.ndarray, grads: dict,
                   rng: np.random.Generator, eps: float = 1e-6) -> float:
    """Largest relative error of the gradient against central differences (8 entries)."""
    value = pb.compile(loss, params, x, y, mode="value")
    worst = 0.0
    for _ in range(8):
        name = rng.choice(sorted(params))
        i = tuple(rng.integers(0, d) for d in params[name].shape)
        old = params[name][i]
        params[name][i] = old + eps
        up = value(params, x, y)
        params[name][i] = old - eps
        down = value(params, x, y)
        params[name][i] = old
        fd = (up - down) / (2 * eps)
        worst = max(worst, abs(fd - grads[name][i]) / max(1e-8, abs(fd) + abs(grads[name][i])))
    return worst


def run(steps: int = 300, device: str | None = None, lr: float = 0.05,
        momentum: float = 0.9) -> None:
    rng = np.random.default_rng(0)
    x, y = spirals(512, rng)
    params = init(rng)
    t0 = time.perf_counter()
    step = pb.compile(loss, params, x, y, mode="withgradient", device=device)
    print(f"compiled loss+gradient in {time.perf_counter() - t0:.2f} s "
          f"(trace {step.timings['trace']:.3f} s)")
    velocity = {name: np.zeros_like(p) for name, p in params.items()}
    times = []
    for k in range(steps + 1):
        t = time.perf_counter()
        val, (grads, _, _) = step(params, x, y)
        times.append(time.perf_counter() - t)
        if k % max(1, steps // 10) == 0:
            print(f"step {k:4d}  loss {val:.4f}")
        for name in params:  # gradient descent with momentum
            velocity[name] = momentum * velocity[name] - lr * grads[name]
            params[name] += velocity[name]
    val, (grads, _, _) = step(params, x, y)
    print(f"final loss {val:.4f}, training accuracy {accuracy(params, x, y):.1%}")
    err = gradient_check(params, x, y, grads, rng)
    print(f"gradient vs central finite differences: max relative error {err:.1e}")
    print(f"time per step (loss + gradient, native): {np.median(times) * 1e6:.0f} us")
