"""The examples of spec/API.md: "Values, arguments and results" and "gradient, pullback,
withgradient", with their exact numbers."""

import dataclasses
from typing import NamedTuple

import numpy as np
import pytest

import pullback as pb


@pytest.fixture(autouse=True)
def on_each_device(device):
    """Every test here runs on each device."""
    with pb.device(device):
        yield


def test_gradient_with_array_and_tuple_of_numbers():
    g = pb.gradient(lambda a, t: pb.sum(a * t[0]) + t[1], np.array([1, 2, 3]), (4, 5))
    assert isinstance(g, tuple) and len(g) == 2
    np.testing.assert_array_equal(g[0], [4.0, 4.0, 4.0])
    assert g[0].dtype == np.float64
    assert g[1] == (6.0, 1.0) and all(isinstance(v, float) for v in g[1])


def test_withgradient_of_division():
    y, g = pb.withgradient(lambda x, y: x / y, 1, 2)
    assert (y, g) == (0.5, (0.5, -0.25))
    assert g == pb.gradient(lambda x, y: x / y, 1, 2)
    res = pb.withgradient(lambda x, y: x / y, 1, 2)
    assert res.val == 0.5 and res.grad == (0.5, -0.25)


def test_auxiliary_output_tuple():
    def f(x):
        z = 1 / x
        return pb.sum(z), z

    res = pb.withgradient(f, np.array([1.0, 2.0, 4.0]))
    assert res.val[0] == 1.75
    np.testing.assert_array_equal(res.val[1], [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(res.grad[0], [-1.0, -0.25, -0.0625])


def test_auxiliary_output_dict():
    res = pb.withgradient(lambda x, y: {"div": x / y, "mul": x * y}, 3.0, 4.0)
    assert res.val == {"div": 0.75, "mul": 12.0}
    assert res.grad == (0.25, -0.1875)


def test_non_scalar_output_suggests_jacobian():
    with pytest.raises(TypeError, match="jacobian"):
        pb.gradient(lambda x: x * 2, np.ones(3))


def test_non_numeric_arguments_pass_through_with_none_slots():
    def f(x, name, flag, nothing, scale):
        assert name == "w" and flag is True and nothing is None
        return pb.sum(x * scale)

    g = pb.gradient(f, np.array([1.0, 2.0]), "w", True, None, 3.0)
    np.testing.assert_array_equal(g[0], [3.0, 3.0])
    assert g[1:4] == (None, None, None)
    assert g[4] == 3.0


def test_unused_argument_gets_none_not_zeros():
    g = pb.gradient(lambda x, y: pb.sum(x ** 2), np.array([1.0, 2.0]), np.array([5.0]))
    np.testing.assert_array_equal(g[0], [2.0, 4.0])
    assert g[1] is None


def test_zero_d_arrays_and_float32():
    g = pb.gradient(lambda x: x * x, np.array(3.0))
    assert isinstance(g[0], np.ndarray) and g[0].shape == () and g[0] == 6.0
    x32 = np.array([1.0, 2.0], dtype=np.float32)
    g = pb.gradient(lambda x: pb.sum(pb.sin(x)), x32)
    assert g[0].dtype == np.float32
    np.testing.assert_allclose(g[0], np.cos(x32), rtol=1e-6)


class Point(NamedTuple):
    x: np.ndarray
    y: float


@dataclasses.dataclass
class Model:
    w: np.ndarray
    b: float
    name: str


def test_pytrees_keep_structure():
    p = Point(np.array([1.0, 2.0]), 3.0)
    m = Model(np.array([[1.0, 2.0]]), 0.5, "m")
    d = {"a": [np.array(2.0), 4.0]}

    def f(p, m, d):
        return pb.sum(p.x * p.y) + pb.sum(m.w) * m.b + d["a"][0] * d["a"][1]

    gp, gm, gd = pb.gradient(f, p, m, d)
    assert isinstance(gp, Point) and isinstance(gm, Model) and isinstance(gd, dict)
    np.testing.assert_array_equal(gp.x, [3.0, 3.0])
    assert gp.y == 3.0
    np.testing.assert_array_equal(gm.w, [[0.5, 0.5]])
    assert gm.b == 3.0 and gm.name is None
    assert float(gd["a"][0]) == 4.0 and gd["a"][1] == 2.0


def test_pullback_vector_jacobian_product():
    y, back = pb.pullback(lambda x: x ** 3, np.array([1.0, 2.0]))
    np.testing.assert_array_equal(y, [1.0, 8.0])
    (g,) = back(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(g, [3.0, 120.0])


def test_pullback_of_a_tuple_output():
    y, back = pb.pullback(lambda a, b: (a * b, a + b), 2.0, 3.0)
    assert y == (6.0, 5.0)
    assert back((1.0, 0.0)) == (3.0, 2.0)
    assert back((0.0, 1.0)) == (1.0, 1.0)
    assert back((1.0, None)) == (3.0, 2.0)


def test_closed_over_array_is_read_each_call():
    w = np.array([1.0, 2.0])
    f = lambda x: pb.sum(w * x)  # noqa: E731
    np.testing.assert_array_equal(pb.gradient(f, np.ones(2))[0], [1.0, 2.0])
    w[:] = [5.0, 7.0]
    np.testing.assert_array_equal(pb.gradient(f, np.ones(2))[0], [5.0, 7.0])
    w = np.array([-1.0, 0.0])
    np.testing.assert_array_equal(pb.gradient(f, np.ones(2))[0], [-1.0, 0.0])


@pytest.mark.parametrize("aux", [0, 1, 3, {"n": 3}, (2, "x")])
def test_integer_aux_outputs_are_constants_not_result_numbers(aux):
    w = np.array([1.0, 2.0])
    out = pb.withgradient(lambda w: (pb.sum(w * w), aux), w)
    assert out.val == (5.0, aux)
    np.testing.assert_array_equal(out.grad[0], 2 * w)
    assert pb.compile(lambda w: (pb.sum(w), aux), w, mode="value")(w) == (3.0, aux)
