"""`gmm`: the ADBench Gaussian mixture objective, d=10, K=25, n=1000, float64.

The gradient is taken with respect to (alpha, means, icf). Row k of `icf` holds the
log-diagonal q_k of the precision factor Q_k, then its strict lower triangle filled
column by column. The objective is the full ADBench one: normalising constant,
mixture log-likelihood, `-n * logsumexp(alpha)` and the Wishart prior (gamma, m)
with its constant.

The DSL version builds the transposed factors Q_k^T from `icf` with one integer-array
gather and a mask, then computes every Q_k (x_i - mu_k) as one batched matrix
product (K, n, d) @ (K, d, d).
"""

from __future__ import annotations

import math

import numpy as np

import pullback as pb
from benchmarks.workload import Problem, Workload


def setup(d: int = 10, k: int = 25, n: int = 1000) -> Problem:
    """ADBench's generator: seed 31337, means ~ U(0, 1), then alpha, icf, x ~ N(0, 1)."""
    if d < 2 or k < 1 or n < 1:
        raise ValueError(f"need d >= 2, k >= 1, n >= 1; got d={d}, k={k}, n={n}")
    rng = np.random.default_rng(31337)
    means = rng.uniform(size=(k, d))
    alpha = rng.standard_normal(k)
    icf = rng.standard_normal((k, d + d * (d - 1) // 2))
    x = rng.standard_normal((n, d))
    return Problem(params=(alpha, means, icf), data=(x,), sizes={"d": d, "K": k, "n": n})


def lower_layout(d: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the strict lower triangle in icf order: column by column."""
    cols, rows = np.triu_indices(d, 1)
    return rows, cols


def transposed_factor_layout(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where Q^T's entries come from: gather index into l (flat, d*d), mask, identity.

    Q^T[c, r] = l[j] for the j-th strict-lower entry (r, c) of Q; other positions
    gather l[0] and are zeroed by the mask.
    """
    rows, cols = lower_layout(d)
    index = np.zeros((d, d), dtype=np.int64)
    mask = np.zeros((d, d))
    index[cols, rows] = np.arange(rows.size)
    mask[cols, rows] = 1.0
    return index.reshape(-1), mask, np.eye(d)


def constant(d: int, k: int, n: int, gamma: float, m: int) -> float:
    """The terms that depend on no parameter: normalisation and the Wishart constant."""
    dof = d + m + 1
    log_gamma_d = 0.25 * d * (d - 1) * math.log(math.pi) + sum(
        math.lgamma(0.5 * dof + 0.5 * (1 - j)) for j in range(1, d + 1)
    )
    wishart = dof * d * (math.log(gamma) - 0.5 * math.log(2.0)) - log_gamma_d
    return -0.5 * n * d * math.log(2.0 * math.pi) - k * wishart


def objective(alpha, means, icf, x, gamma=1.0, m=0):
    """The GMM objective in the DSL."""
    n, d = x.shape
    k = alpha.shape[0]
    index, mask, eye = transposed_factor_layout(d)
    q = icf[:, :d]
    l = icf[:, d:]
    qt = pb.reshape(l[:, index], (k, d, d)) * mask + pb.exp(q)[:, :, None] * eye
    z = (x[None, :, :] - means[:, None, :]) @ qt
    sum_q = pb.sum(q, axis=1)
    main = alpha[:, None] + sum_q[:, None] - 0.5 * pb.sum(z * z, axis=2)
    likelihood = pb.sum(pb.logsumexp(main, axis=0)) - n * pb.logsumexp(alpha)
    frobenius = pb.sum(pb.exp(2.0 * q), axis=1) + pb.sum(l * l, axis=1)
    prior = pb.sum(0.5 * gamma * gamma * frobenius - m * sum_q)
    return likelihood + prior + constant(d, k, n, gamma, m)


def _logsumexp(v: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(v, axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.sum(np.exp(v - top), axis=axis))


def _factors(icf: np.ndarray, d: int) -> np.ndarray:
    """The lower-triangular Q_k, shape (K, d, d)."""
    rows, cols = lower_layout(d)
    q = np.zeros((icf.shape[0], d, d))
    q[:, rows, cols] = icf[:, d:]
    q[:, np.arange(d), np.arange(d)] = np.exp(icf[:, :d])
    return q


def _main_terms(alpha, means, icf, x):
    """(main (K, n), z (K, n, d), Q (K, d, d), centred x (K, n, d))."""
    d = x.shape[1]
    factor = _factors(icf, d)
    centred = x[None, :, :] - means[:, None, :]
    z = centred @ factor.transpose(0, 2, 1)
    main = (alpha + icf[:, :d].sum(axis=1))[:, None] - 0.5 * np.sum(z * z, axis=2)
    return main, z, factor, centred


def numpy_objective(alpha, means, icf, x, gamma=1.0, m=0) -> float:
    d = x.shape[1]
    main = _main_terms(alpha, means, icf, x)[0]
    q, l = icf[:, :d], icf[:, d:]
    likelihood = np.sum(_logsumexp(main, 0)) - x.shape[0] * _logsumexp(alpha, 0)
    frobenius = np.sum(np.exp(2.0 * q), axis=1) + np.sum(l * l, axis=1)
    prior = np.sum(0.5 * gamma * gamma * frobenius - m * q.sum(axis=1))
    return float(likelihood + prior + constant(d, alpha.size, x.shape[0], gamma, m))


def numpy_gradient(alpha, means, icf, x, gamma=1.0, m=0):
    """Analytic gradient: responsibilities w weight every per-point term."""
    n, d = x.shape
    main, z, factor, centred = _main_terms(alpha, means, icf, x)
    w = np.exp(main - _logsumexp(main, 0)[None, :])
    w_sum = w.sum(axis=1)
    wz = w[:, :, None] * z
    d_alpha = w_sum - n * np.exp(alpha - _logsumexp(alpha, 0))
    d_means = np.einsum("kr,krc->kc", wz.sum(axis=1), factor)
    d_factor = -(wz.transpose(0, 2, 1) @ centred)
    diag = np.exp(icf[:, :d])
    rows, cols = lower_layout(d)
    d_q = w_sum[:, None] + d_factor[:, np.arange(d), np.arange(d)] * diag
    d_q += gamma * gamma * diag * diag - m
    d_l = d_factor[:, rows, cols] + gamma * gamma * icf[:, d:]
    return d_alpha, d_means, np.concatenate([d_q, d_l], axis=1)


def jax_objective(alpha, means, icf, x, gamma=1.0, m=0):
    """The same formulation as the DSL version, in JAX."""
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    n, d = x.shape
    k = alpha.shape[0]
    index, mask, eye = transposed_factor_layout(d)
    q, l = icf[:, :d], icf[:, d:]
    qt = jnp.reshape(l[:, index], (k, d, d)) * mask + jnp.exp(q)[:, :, None] * eye
    z = (x[None, :, :] - means[:, None, :]) @ qt
    sum_q = jnp.sum(q, axis=1)
    main = alpha[:, None] + sum_q[:, None] - 0.5 * jnp.sum(z * z, axis=2)
    likelihood = jnp.sum(logsumexp(main, axis=0)) - n * logsumexp(alpha)
    frobenius = jnp.sum(jnp.exp(2.0 * q), axis=1) + jnp.sum(l * l, axis=1)
    prior = jnp.sum(0.5 * gamma * gamma * frobenius - m * sum_q)
    return likelihood + prior + constant(d, k, n, gamma, m)


WORKLOAD = Workload(
    name="gmm",
    summary="ADBench GMM objective, d=10 K=25 n=1000, float64",
    setup=setup,
    small={"d": 3, "k": 4, "n": 10},
    objective=objective,
    numpy_objective=numpy_objective,
    numpy_gradient=numpy_gradient,
    jax_objective=jax_objective,
    rtol=1e-9,
)
