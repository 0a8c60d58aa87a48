"""Second order on every DSL function: `hessian` (forward over reverse) and
`hessian_reverse` (reverse over reverse) agree with each other and with second-order
central differences of the same function evaluated by numpy."""

import numpy as np
import pytest
from dsl_op_table import ALL, NEEDS_AXIS
from opencl_platform import NO_OPENCL

import pullback as pb

# first-order-only points (kinks, plateaus) are measure zero; these are smooth where sampled
OPENCL_SAMPLE = ["tanh", "divide", "prod", "logsumexp", "matmul", "gather", "cumsum"]
CASES = [(name, "cpu") for name in sorted(ALL)] + [
    pytest.param(name, "opencl", marks=NO_OPENCL) for name in OPENCL_SAMPLE]


def scalar_program(name):
    """x -> sum(op(x[, 0.7 x + 0.3]) * w): one input, so a Hessian is defined."""
    fn, n, dom = ALL[name]
    shape = (3,) if name in NEEDS_AXIS else (2, 3)
    rng = np.random.default_rng(len(name))
    x = rng.uniform(*dom, size=shape)
    w = rng.uniform(0.5, 1.5, np.shape(fn(*([x] * n))))

    def f(v):
        args = [v, 0.7 * v + 0.3][:n]
        return pb.sum(fn(*args) * w)

    return f, x


def fd_hessian(f, x, h=1e-4):
    n = x.size

    def at(d):
        return float(f(x + d.reshape(x.shape)))

    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            e_i, e_j = np.eye(n)[i] * h, np.eye(n)[j] * h
            out[i, j] = (at(e_i + e_j) - at(e_i - e_j) - at(-e_i + e_j)
                         + at(-e_i - e_j)) / (4 * h * h)
    return out


@pytest.mark.parametrize(("name", "device"), CASES, ids=str)
def test_both_hessians_agree_with_finite_differences(name, device):
    f, x = scalar_program(name)
    forward = pb.hessian(f, x, device=device)
    reverse = pb.hessian_reverse(f, x, device=device)
    np.testing.assert_allclose(forward, reverse, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(forward, fd_hessian(f, x), rtol=1e-4, atol=1e-5)
    diag = pb.diaghessian(f, x, device=device)[0]
    np.testing.assert_allclose(diag.ravel(), np.diag(forward), rtol=1e-10, atol=1e-12)
