"""`hessian`: the full 100 x 100 Hessian of `f(x) = sum(log(1 + exp(A @ x))) + sum(x**4) / 4`.

A is (300, 100). The Hessian is `A.T @ diag(p (1 - p)) @ A + diag(3 x**2)` with
`p = sigmoid(A @ x)`. pullback computes it forward over reverse, batched over the 100
directions, in one native call (`pb.hessian`); JAX as `jax.jit(jax.hessian(f))`.
"""

from __future__ import annotations

import numpy as np

import pullback as pb
from benchmarks.workload import Problem, Workload


def setup(n: int = 100, m: int = 300) -> Problem:
    rng = np.random.default_rng(11)
    a = rng.standard_normal((m, n)) / np.sqrt(n)
    x = rng.standard_normal(n)
    return Problem(params=(x,), data=(a,), sizes={"n": n, "rows of A": m})


def objective(x, a):
    return pb.sum(pb.log1p(pb.exp(a @ x))) + pb.sum(x ** 4) / 4.0


def numpy_objective(x: np.ndarray, a: np.ndarray) -> float:
    return float(np.sum(np.log1p(np.exp(a @ x))) + np.sum(x ** 4) / 4.0)


def numpy_gradient(x: np.ndarray, a: np.ndarray) -> tuple[np.ndarray]:
    """The Hessian, by hand."""
    p = 1.0 / (1.0 + np.exp(-(a @ x)))
    return ((a.T * (p * (1.0 - p))) @ a + np.diag(3.0 * x * x),)


def jax_objective(x, a):
    import jax.numpy as jnp

    return jnp.sum(jnp.log1p(jnp.exp(a @ x))) + jnp.sum(x ** 4) / 4.0


WORKLOAD = Workload(
    name="hessian",
    summary="Hessian of sum(log(1 + exp(A x))) + sum(x^4)/4, 100 x 100, float64",
    setup=setup,
    small={"n": 5, "m": 8},
    objective=objective,
    numpy_objective=numpy_objective,
    numpy_gradient=numpy_gradient,
    jax_objective=jax_objective,
    rtol=1e-10,
    transform="hessian",
)
