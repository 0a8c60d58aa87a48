"""`jacobian(f, ps)` / `withjacobian(f, ps)` in implicit mode: the spec's `Params`
example with its exact numbers, and Grads keyed by every parameter."""

import numpy as np
import pytest

import pullback as pb


@pytest.fixture(autouse=True)
def on_each_device(device):
    """Every test here runs on each device."""
    with pb.device(device):
        yield


def test_spec_example():
    xs = pb.array([[1, 2], [3, 4]])
    ys = pb.array([5, 7, 9])
    J = pb.jacobian(lambda: ys[0:2] + pb.sum(xs ** 2), pb.Params([xs, ys]))
    assert isinstance(J, pb.Grads)
    np.testing.assert_array_equal(J[ys], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(J[xs], [[2.0, 4.0, 6.0, 8.0], [2.0, 4.0, 6.0, 8.0]])
    assert J[xs].dtype == np.float64


def test_withjacobian_value_and_keys():
    w = pb.array([1.0, 2.0, 3.0])
    unused = pb.array([4.0])
    res = pb.withjacobian(lambda: pb.cumsum(w * w), pb.Params([w, unused]))
    np.testing.assert_array_equal(res.val, [1.0, 5.0, 14.0])
    assert [id(p) for p in res.grad.keys()] == [id(w), id(unused)]
    np.testing.assert_array_equal(res.grad[w], [[2, 0, 0], [2, 4, 0], [2, 4, 6]])
    np.testing.assert_array_equal(res.grad[unused], np.zeros((3, 1)))


def test_scalar_output_has_one_row():
    w = pb.array([3.0, -1.0])
    J = pb.jacobian(lambda: pb.sum(w ** 2), pb.Params([w]))
    np.testing.assert_array_equal(J[w], [[6.0, -2.0]])


def test_reads_current_values():
    w = pb.array([1.0, 2.0])
    f = lambda: w ** 3  # noqa: E731
    np.testing.assert_array_equal(pb.jacobian(f, pb.Params([w]))[w], np.diag([3.0, 12.0]))
    w[:] = [2.0, 1.0]
    np.testing.assert_array_equal(pb.jacobian(f, pb.Params([w]))[w], np.diag([12.0, 3.0]))


def test_params_with_explicit_arguments_raise():
    w = pb.array([1.0])
    with pytest.raises(TypeError, match="implicit mode"):
        pb.jacobian(lambda x: w * x, np.ones(1), pb.Params([w]))
