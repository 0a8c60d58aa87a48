"""Programs of any depth: each family repeats one layer `depth` times and sums a term of
every layer into the loss, so each layer's values are read by the next layer and by the
loss (the shape of an unrolled recurrence and of its gradient).

Each family is written once over a numpy-like module (`pullback` or `numpy`): traced,
it is the program under test; on numpy it is the reference for finite differences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

WIDTH = 4


def recurrence(np_like: Any, depth: int, x: Any, w: Any) -> Any:
    """h <- tanh(h w + x): elementwise, every h read twice."""
    h, total = x, 0.0
    for _ in range(depth):
        h = np_like.tanh(h * w + x)
        total = total + np_like.sum(h * h)
    return total


def second_order(np_like: Any, depth: int, x: Any, w: Any) -> Any:
    """h_k = h_{k-1} * sin(h_{k-2} w): each value read by the next two layers."""
    before, h, total = x, w, 0.0
    for _ in range(depth):
        before, h = h, h * np_like.sin(before * w) + 0.5
        total = total + np_like.sum(h)
    return total


def dense(np_like: Any, depth: int, x: Any, w: Any) -> Any:
    """h <- tanh(h @ W + b) with one W (the matrix) and b (its first row) for all layers."""
    h, total = x, 0.0
    for _ in range(depth):
        h = np_like.tanh(h @ w + w[0])
        total = total + np_like.sum(h * x)
    return total


def normalised(np_like: Any, depth: int, x: Any, w: Any) -> Any:
    """h <- (h w - logsumexp(h w)): a reduction broadcast back in every layer."""
    h, total = x, 0.0
    for _ in range(depth):
        z = h * w
        h = z - np_like.logsumexp(z)
        total = total + np_like.sum(np_like.exp(h) * x)
    return total


def shifted(np_like: Any, depth: int, x: Any, w: Any) -> Any:
    """h <- h shifted by one (slices and a concatenation) times w, plus cos h."""
    h, total = x, 0.0
    for _ in range(depth):
        h = np_like.concatenate([h[1:], h[:1]]) * w + 0.3 * np_like.cos(h)
        total = total + np_like.sum(h[:2] * h[:2])
    return total


def outer(np_like: Any, depth: int, x: Any, w: Any) -> Any:
    """h <- sum over rows of tanh(h[:, None] * W): a broadcast and a reduction per layer."""
    h, total = x, 0.0
    for _ in range(depth):
        h = np_like.sum(np_like.tanh(h[:, None] * w), axis=0) / WIDTH
        total = total + np_like.sum(h)
    return total


@dataclass(frozen=True)
class Family:
    """A layer repeated `depth` times, with its two arguments' shapes."""

    fn: Callable[..., Any]
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]

    @property
    def name(self) -> str:
        return self.fn.__name__

    def arguments(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        return rng.uniform(-1, 1, self.x_shape), rng.uniform(-1, 1, self.w_shape)


def _logsumexp(v: np.ndarray) -> float:
    top = np.max(v)
    return float(top + np.log(np.sum(np.exp(v - top))))


class NumpyLike:
    """numpy with the few functions the families use that numpy lacks."""

    def __getattr__(self, name: str) -> Any:
        return _logsumexp if name == "logsumexp" else getattr(np, name)


FAMILIES = [
    Family(recurrence, (WIDTH,), (WIDTH,)),
    Family(second_order, (WIDTH,), (WIDTH,)),
    Family(dense, (WIDTH,), (WIDTH, WIDTH)),
    Family(normalised, (WIDTH,), (WIDTH,)),
    Family(shifted, (WIDTH,), (WIDTH,)),
    Family(outer, (WIDTH,), (WIDTH, WIDTH)),
]
