"""The "jacobian, withjacobian" examples of spec/API.md with their exact numbers, and
Jacobians of randomly composed programs against central finite differences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pullback as pb


@pytest.fixture(autouse=True)
def on_each_device(device):
    """Every test here runs on each device."""
    with pb.device(device):
        yield


def test_slice_squared():
    (j,) = pb.jacobian(lambda a: 100 * a[0:3] ** 2, np.arange(1, 8))
    want = np.zeros((3, 7))
    want[[0, 1, 2], [0, 1, 2]] = [200.0, 400.0, 600.0]
    np.testing.assert_array_equal(j, want)
    assert j.dtype == np.float64


def test_array_and_number():
    ja, jx = pb.jacobian(lambda a, x: a ** 2 * x, np.array([1, 2, 3]), 1)
    np.testing.assert_array_equal(ja, np.diag([2.0, 4.0, 6.0]))
    np.testing.assert_array_equal(jx, [1.0, 4.0, 9.0])
    assert jx.shape == (3,)


def test_prod_over_an_axis_given_as_a_number():
    ja, jd = pb.jacobian(lambda a, d: pb.prod(a, axis=d),
                         np.array([[1, 2], [3, 4], [5, 6]]), 1)
    np.testing.assert_array_equal(ja, [[2, 1, 0, 0, 0, 0], [0, 0, 4, 3, 0, 0],
                                       [0, 0, 0, 0, 6, 5]])
    np.testing.assert_array_equal(jd, [0.0, 0.0, 0.0])


def test_string_argument_gets_none():
    ja, js = pb.jacobian(lambda a, s: a ** len(s), np.array([1, 2, 3]), "str")
    np.testing.assert_array_equal(ja, np.diag([3.0, 12.0, 27.0]))
    assert js is None


def test_tuple_argument_gets_none_and_scalar_output_one_row():
    ja, jt = pb.jacobian(lambda a, t: pb.sum(a * t[0]) + t[1], np.array([1, 2, 3]), (4, 5))
    np.testing.assert_array_equal(ja, [[4.0, 4.0, 4.0]])
    assert jt is None


def test_withjacobian_of_cumsum():
    res = pb.withjacobian(pb.cumsum, np.array([1, 2, 3]))
    val, (j,) = res
    np.testing.assert_array_equal(val, [1.0, 3.0, 6.0])
    np.testing.assert_array_equal(res.val, val)
    np.testing.assert_array_equal(j, [[1, 0, 0], [1, 1, 0], [1, 1, 1]])


def test_rows_in_row_major_order():
    x = np.arange(6.0).reshape(2, 3)
    (j,) = pb.jacobian(lambda a: a.T * 1.0, x)
    # y = x.T, so y.ravel()[k] = x[k % 2, k // 2]
    want = np.zeros((6, 6))
    for k in range(6):
        want[k, (k % 2) * 3 + k // 2] = 1.0
    np.testing.assert_array_equal(j, want)


def test_scalar_number_argument_and_output():
    (j,) = pb.jacobian(lambda x: x * x, 3.0)
    np.testing.assert_array_equal(j, [6.0])


def test_unused_argument_gets_zeros():
    ja, jb = pb.jacobian(lambda a, b: a * 2.0, np.ones(2), np.ones(3, np.float32))
    np.testing.assert_array_equal(ja, 2.0 * np.eye(2))
    np.testing.assert_array_equal(jb, np.zeros((2, 3)))
    assert jb.dtype == np.float32


def test_float32_jacobian():
    x = np.array([0.5, -1.0], np.float32)
    (j,) = pb.jacobian(lambda a: pb.sin(a), x)
    assert j.dtype == np.float32
    np.testing.assert_allclose(j, np.diag(np.cos(x)), rtol=1e-6)


def test_closed_over_array_is_an_input_not_a_constant():
    w = np.array([1.0, 2.0])
    f = lambda x: x * w  # noqa: E731
    np.testing.assert_array_equal(pb.jacobian(f, np.ones(2))[0], np.diag([1.0, 2.0]))
    w[:] = [5.0, 7.0]
    np.testing.assert_array_equal(pb.jacobian(f, np.ones(2))[0], np.diag([5.0, 7.0]))


def test_tuple_output_is_rejected():
    with pytest.raises(TypeError, match="one array or number"):
        pb.jacobian(lambda x: (x, x), np.ones(2))


def test_not_callable():
    with pytest.raises(TypeError, match="callable"):
        pb.jacobian(np.ones(2), np.ones(2))


# ----------------------------------------------------------------------------
# Random programs against finite differences
# ----------------------------------------------------------------------------

SHAPES = [(), (1,), (3,), (2, 3), (1, 3)]


def _step(v: Any, kind: int, c: np.ndarray, w: np.ndarray, x: Any) -> Any:
    """One DSL op applied to `v`; `c` broadcasts against v's last axis, `w` multiplies it."""
    nd = np.ndim(v)
    if kind == 0:
        return pb.sin(v) * c if nd else pb.sin(v)
    if kind == 1:
        return pb.tanh(v + c[..., :1] if nd else v)
    if kind == 2:
        return pb.exp(0.3 * v) - v * v
    if kind == 3:
        return pb.sum(v, axis=-1) if nd else v * 1.5
    if kind == 4:
        return v @ w if nd else v * 2.0
    if kind == 5:
        return v[..., ::-1] * v if nd else v / (1.0 + v * v)
    if kind == 6:
        return pb.maximum(v, 0.1) * v if nd else pb.cos(v)
    return v * pb.sum(pb.sin(x))


def random_program(rng: np.random.Generator, kinds: list[int],
                   shape: tuple[int, ...]) -> Callable[[Any], Any]:
    """A function of one argument of `shape` composed of the DSL ops named by `kinds`."""
    n = shape[-1] if shape else 1
    consts = [rng.uniform(0.5, 1.5, n) for _ in kinds]
    mats = [rng.uniform(-1.0, 1.0, (n, n)) for _ in kinds]

    def f(x: Any) -> Any:
        v = x
        for kind, c, w in zip(kinds, consts, mats, strict=True):
            if np.ndim(v) == 0 or np.shape(v)[-1] == n:
                v = _step(v, kind, c, w, x)
            else:
                v = pb.sin(v)
        return v

    return f


def fd_jacobian(f: Callable[[Any], Any], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of f evaluated by numpy, one column per element of x."""
    x = np.asarray(x, np.float64)
    cols = []
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h
        up = np.asarray(f(x + e.reshape(x.shape)), np.float64)
        down = np.asarray(f(x - e.reshape(x.shape)), np.float64)
        cols.append(((up - down) / (2 * h)).ravel())
    return np.array(cols).T.reshape(-1, x.size)


PROGRAMS = st.tuples(
    st.lists(st.integers(0, 7), min_size=1, max_size=4),
    st.sampled_from(SHAPES),
    st.integers(0, 2**31 - 1),
    st.sampled_from([np.float64, np.float32]),
)


def _check_jacobian(kinds, shape, seed, dtype) -> None:
    rng = np.random.default_rng(seed)
    f = random_program(rng, kinds, shape)
    x = rng.uniform(-1.0, 1.0, shape).astype(dtype)
    if shape == ():
        x = dtype(x)
    val, (j,) = pb.withjacobian(f, x)
    want = fd_jacobian(f, x)
    if shape == ():
        want = want[:, 0]  # a number gets a vector
    assert j.shape == want.shape
    y = np.asarray(f(np.asarray(x, np.float64)))
    tol = {"rtol": 1e-6, "atol": 1e-7} if dtype == np.float64 else {"rtol": 2e-3, "atol": 2e-3}
    np.testing.assert_allclose(val, y, **tol)
    np.testing.assert_allclose(j, want, **tol)


def test_random_programs_against_finite_differences(device):
    """Many programs on the CPU; a few on OpenCL, where each compile takes longer."""

    @settings(max_examples=30 if device == "cpu" else 4, deadline=None)
    @given(PROGRAMS)
    def check(program):
        _check_jacobian(*program)

    check()
