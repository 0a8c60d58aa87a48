"""The "Buffer" section of spec/API.md, with its exact numbers, and derivatives through
Buffer writes checked against central finite differences."""

import numpy as np
import pytest
from finite_differences import central_difference

import pullback as pb


@pytest.fixture(autouse=True)
def on_each_device(device):
    """Every test here runs on each device."""
    with pb.device(device):
        yield


def vstack(xs):
    buf = pb.Buffer(xs, len(xs), 5)
    for i in range(5):
        buf[:, i] = xs
    return pb.copy(buf)




def test_vstack_runs_eagerly_as_plain_python():
    out = vstack(np.array([1, 2, 3]))
    assert out.dtype.kind == "i"
    np.testing.assert_array_equal(out, [[1, 1, 1, 1, 1], [2, 2, 2, 2, 2], [3, 3, 3, 3, 3]])


def test_gradient_through_vstack():
    g = pb.gradient(lambda x: pb.sum(vstack(x)), np.array([1, 2, 3]))
    assert isinstance(g, tuple) and len(g) == 1
    np.testing.assert_array_equal(g[0], [5.0, 5.0, 5.0])
    assert g[0].dtype == np.float64


def _running_products(x):
    """Overwrites and reads of earlier writes: buf[i] = buf[i-1] * x[i], then buf[0] again."""
    buf = pb.Buffer(x)
    buf[0] = x[0]
    for i in range(1, len(x)):
        buf[i] = buf[i - 1] * x[i]
    buf[0] = pb.sin(x[-1])  # replaces the first write: its derivative is gone
    return pb.sum(pb.copy(buf) ** 2)


def test_gradient_through_reads_and_overwrites_matches_finite_differences():
    x = np.array([0.7, -1.3, 0.4, 1.1])
    g = pb.gradient(_running_products, x)[0]
    np.testing.assert_allclose(g, central_difference(_running_products, x), rtol=1e-6)


def test_write_after_copy_raises_under_differentiation():
    def f(x):
        buf = pb.Buffer(x)
        buf[:] = x
        y = pb.copy(buf)
        buf[0] = 1.0
        return pb.sum(y)

    with pytest.raises(ValueError, match="frozen"):
        pb.gradient(f, np.ones(3))


def test_matrix_product_with_a_buffer_raises_type_error():
    def f(x):
        buf = pb.Buffer(x, 2, 2)
        buf[0] = x
        return pb.sum(buf @ x)

    with pytest.raises(TypeError, match="not an array.*pb.copy"):
        pb.gradient(f, np.ones(2))
