"""`chain`: a chain of 8 elementwise ops over 10^6 float64 elements.

    a = 1.5 * x + 0.25     (mul, add)
    b = a * a              (mul)
    c = b - x              (sub)
    d = tanh(c)            (tanh: the one transcendental)
    e = d * x              (mul)
    y = e / (b + 1)        (add, div)

The objective is `sum(y)`: seven arithmetic ops and one `tanh`, so the timing is
dominated by memory traffic and by how well elementwise ops fuse.
"""

from __future__ import annotations

import numpy as np

import pullback as pb
from benchmarks.workload import Problem, Workload


def setup(size: int = 1_000_000) -> Problem:
    """x uniform in [-1, 1), float64."""
    x = np.random.default_rng(31337).uniform(-1.0, 1.0, size)
    return Problem(params=(x,), sizes={"n": size})


def objective(x):
    """The chain in the DSL."""
    a = 1.5 * x + 0.25
    b = a * a
    d = pb.tanh(b - x)
    return pb.sum(d * x / (b + 1.0))


def numpy_objective(x: np.ndarray) -> float:
    a = 1.5 * x + 0.25
    b = a * a
    return float(np.sum(np.tanh(b - x) * x / (b + 1.0)))


def numpy_gradient(x: np.ndarray) -> tuple[np.ndarray]:
    """Reverse through the chain op by op."""
    a = 1.5 * x + 0.25
    b = a * a
    d = np.tanh(b - x)
    e = d * x
    inv = 1.0 / (b + 1.0)
    e_bar = inv
    b_bar = -e * inv * inv
    d_bar = e_bar * x
    x_bar = e_bar * d
    c_bar = d_bar * (1.0 - d * d)
    b_bar += c_bar
    x_bar -= c_bar
    x_bar += 1.5 * (2.0 * a * b_bar)
    return (x_bar,)


def jax_objective(x):
    import jax.numpy as jnp

    a = 1.5 * x + 0.25
    b = a * a
    return jnp.sum(jnp.tanh(b - x) * x / (b + 1.0))


WORKLOAD = Workload(
    name="chain",
    summary="8 elementwise ops (7 arithmetic + tanh), 10^6 float64",
    setup=setup,
    small={"size": 50},
    objective=objective,
    numpy_objective=numpy_objective,
    numpy_gradient=numpy_gradient,
    jax_objective=jax_objective,
    rtol=1e-10,
)
