"""`jacobian`: the full Jacobian of a 1,000-output layer, `y = tanh(W @ x) * s`.

W is (1000, 200), x has 200 entries, s is a fixed (1000,) scale; the Jacobian is the
dense (1000, 200) matrix `((1 - tanh(W @ x)**2) * s)[:, None] * W`. pullback computes
it as one pullback batched over the 1,000 cotangents (`vmap` of `autodiff`), JAX as
`jax.jit(jax.jacrev(f))`.
"""

from __future__ import annotations

import numpy as np

import pullback as pb
from benchmarks.workload import Problem, Workload


def setup(outputs: int = 1000, inputs: int = 200) -> Problem:
    rng = np.random.default_rng(7)
    w = rng.standard_normal((outputs, inputs)) / np.sqrt(inputs)
    s = rng.uniform(0.5, 1.5, outputs)
    x = rng.standard_normal(inputs)
    return Problem(params=(x,), data=(w, s), sizes={"outputs": outputs, "inputs": inputs})


def objective(x, w, s):
    return pb.tanh(w @ x) * s


def numpy_objective(x: np.ndarray, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.tanh(w @ x) * s


def numpy_gradient(x: np.ndarray, w: np.ndarray, s: np.ndarray) -> tuple[np.ndarray]:
    """The Jacobian, by hand."""
    t = np.tanh(w @ x)
    return (((1.0 - t * t) * s)[:, None] * w,)


def jax_objective(x, w, s):
    import jax.numpy as jnp

    return jnp.tanh(w @ x) * s


WORKLOAD = Workload(
    name="jacobian",
    summary="Jacobian of tanh(W x) * s, 1000 outputs x 200 inputs, float64",
    setup=setup,
    small={"outputs": 7, "inputs": 4},
    objective=objective,
    numpy_objective=numpy_objective,
    numpy_gradient=numpy_gradient,
    jax_objective=jax_objective,
    rtol=1e-10,
    transform="jacobian",
)
