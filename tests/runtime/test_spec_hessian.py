"""The "hessian, hessian_reverse, diaghessian" examples of spec/API.md with their exact
numbers, and Hessians of randomly composed programs against central differences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_spec_jacobian import SHAPES, random_program

import pullback as pb

HESSIANS = [pb.hessian, pb.hessian_reverse]


@pytest.fixture(autouse=True)
def on_each_device(device):
    """Every test here runs on each device."""
    with pb.device(device):
        yield


@pytest.mark.parametrize("hess", HESSIANS)
def test_product_of_two_entries(hess):
    h = hess(lambda x: x[0] * x[1], np.random.default_rng(0).standard_normal(2))
    np.testing.assert_array_equal(h, [[0.0, 1.0], [1.0, 0.0]])


@pytest.mark.parametrize("hess", HESSIANS)
def test_sum_of_cubes_in_row_major_order(hess):
    h = hess(lambda x: pb.sum(x ** 3), np.array([[1, 2], [3, 4]]))
    np.testing.assert_array_equal(h, np.diag([6.0, 12.0, 18.0, 24.0]))
    assert h.dtype == np.float64


@pytest.mark.parametrize("hess", HESSIANS)
def test_number_gives_a_number(hess):
    h = hess(pb.sin, np.pi / 2)
    assert isinstance(h, float) and h == -1.0


@pytest.mark.parametrize("hess", HESSIANS)
def test_arctan2_of_two_entries(hess):
    h = hess(lambda xy: pb.arctan2(xy[0], xy[1]), np.array([1, 2]))
    np.testing.assert_allclose(h, [[-0.16, -0.12], [-0.12, 0.16]], rtol=1e-14)


def test_diaghessian_of_sum_of_cubes():
    (d,) = pb.diaghessian(lambda x: pb.sum(x ** 3), np.array([[1, 2], [3, 4]]))
    np.testing.assert_array_equal(d, [[6.0, 12.0], [18.0, 24.0]])


def test_diaghessian_of_two_arguments():
    dx, dy = pb.diaghessian(lambda x, y: pb.sum(x * y[:, None] * y[None, :]),
                            np.array([[1, 22], [333, 4]]), np.array([0.5, 0.666]))
    np.testing.assert_array_equal(dx, np.zeros((2, 2)))
    np.testing.assert_allclose(dy, [2.0, 8.0], rtol=1e-14)


def test_diaghessian_of_numbers():
    d = pb.diaghessian(pb.arctan2, 1, 2)
    assert all(isinstance(v, float) for v in d)
    np.testing.assert_allclose(d, (-0.16, 0.16), rtol=1e-14)


def test_diaghessian_non_numeric_argument_gets_none():
    d = pb.diaghessian(lambda x, s: pb.sum(x ** 3) * len(s), np.array([1.0, 2.0]), "ab")
    np.testing.assert_array_equal(d[0], [12.0, 24.0])
    assert d[1] is None


@pytest.mark.parametrize("hess", HESSIANS)
def test_function_not_depending_on_x(hess):
    np.testing.assert_array_equal(hess(lambda x: 3.0, np.ones(2)), np.zeros((2, 2)))
    np.testing.assert_array_equal(hess(lambda x: pb.sum(x) * 2.0, np.ones(3)),
                                  np.zeros((3, 3)))


@pytest.mark.parametrize("hess", HESSIANS)
def test_float32(hess):
    x = np.array([0.5, -1.0], np.float32)
    h = hess(lambda v: pb.sum(pb.sin(v)), x)
    assert h.dtype == np.float32
    np.testing.assert_allclose(h, np.diag(-np.sin(x)), rtol=1e-6)


@pytest.mark.parametrize("fn", [pb.hessian, pb.hessian_reverse, pb.diaghessian])
def test_non_scalar_output_is_rejected(fn):
    with pytest.raises(TypeError, match="real scalar.*jacobian"):
        fn(lambda x: x * 2.0, np.ones(3))


def test_non_numeric_x_is_rejected():
    with pytest.raises(TypeError, match="number or a numeric array"):
        pb.hessian(lambda t: t[0] * t[1], (1.0, 2.0))


# ----------------------------------------------------------------------------
# Random programs against finite differences
# ----------------------------------------------------------------------------


def fd_hessian(f: Callable[[Any], Any], x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Second-order central differences of f evaluated by numpy."""
    x = np.asarray(x, np.float64)
    n = x.size

    def at(i: int, si: float, j: int, sj: float) -> float:
        d = np.zeros(n)
        d[i] += si * h
        d[j] += sj * h
        return float(f(x + d.reshape(x.shape)))

    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = (at(i, 1, j, 1) - at(i, 1, j, -1) - at(i, -1, j, 1)
                         + at(i, -1, j, -1)) / (4 * h * h)
    return out


PROGRAMS = st.tuples(
    st.lists(st.integers(0, 7), min_size=1, max_size=3),
    st.sampled_from(SHAPES),
    st.integers(0, 2**31 - 1),
    st.sampled_from([np.float64, np.float32]),
)


def _check_hessians(kinds, shape, seed, dtype) -> None:
    rng = np.random.default_rng(seed)
    g = random_program(rng, kinds, shape)

    def f(x):
        return pb.sum(pb.sin(g(x)))

    x = rng.uniform(-1.0, 1.0, shape).astype(dtype)
    if shape == ():
        x = dtype(x)
    want = fd_hessian(f, x)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float64 else {"rtol": 5e-3, "atol": 5e-3}
    fwd, rev = pb.hessian(f, x), pb.hessian_reverse(f, x)
    diag = pb.diaghessian(f, x)[0]
    if shape == ():
        fwd, rev, diag = (np.array([[v]]) for v in (fwd, rev, diag))
    np.testing.assert_allclose(fwd, want, **tol)
    np.testing.assert_allclose(rev, want, **tol)
    exact = {"rtol": 1e-12, "atol": 1e-12} if dtype == np.float64 else {"rtol": 1e-4,
                                                                         "atol": 1e-5}
    np.testing.assert_allclose(fwd, rev, **exact)
    np.testing.assert_allclose(np.ravel(diag), np.diag(fwd), **exact)


def test_random_programs_against_finite_differences(device):
    """hessian, hessian_reverse and diaghessian agree with each other and with finite
    differences; many programs on the CPU, a few on OpenCL."""

    @settings(max_examples=25 if device == "cpu" else 3, deadline=None)
    @given(PROGRAMS)
    def check(program):
        _check_hessians(*program)

    check()
