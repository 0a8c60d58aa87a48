"""Bool arrays in arithmetic, as numpy treats them: `+`, `*`, maximum and minimum are
logical (bool results), abs is the identity, max/min reduce to any/all, and `-`,
negative and sign are refused with numpy's reason. Expected values are numpy's."""

from __future__ import annotations

import numpy as np
import pytest

import pullback as pb

RNG = np.random.default_rng(11)
SHAPES = [(), (1,), (5,), (3, 4)]

BINARY = {
    "add": lambda x, y: x + y,
    "mul": lambda x, y: x * y,
    "maximum": lambda x, y: pb.maximum(x, y),
    "minimum": lambda x, y: pb.minimum(x, y),
    "add_true": lambda x, y: x + True,
    "mul_int": lambda x, y: x * 3,
}
NUMPY_BINARY = {
    "add": lambda x, y: x + y,
    "mul": lambda x, y: x * y,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "add_true": lambda x, y: x + True,
    "mul_int": lambda x, y: x * 3,
}


def _masks(shape):
    return RNG.random(shape) > 0.5, RNG.random(shape) > 0.5


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_ops_on_bools_match_numpy(name, shape, device):
    x, y = _masks(shape)
    got = pb.compile(BINARY[name], x, y, mode="value", device=device)(x, y)
    want = NUMPY_BINARY[name](x, y)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    np.testing.assert_array_equal(got, want)


def test_broadcast_bool_operands_match_numpy(device):
    x, y = RNG.random((3, 1)) > 0.5, RNG.random((1, 4)) > 0.5
    got = pb.compile(lambda a, b: a * b + pb.maximum(a, b), x, y, mode="value",
                     device=device)(x, y)
    np.testing.assert_array_equal(got, x * y + np.maximum(x, y))


@pytest.mark.parametrize("reduce", ["max", "min"])
@pytest.mark.parametrize(("shape", "axis", "keepdims"), [
    ((5,), None, False), ((3, 4), 0, False), ((3, 4), 1, True), ((2, 3, 4), (0, 2), False),
    ((1,), None, True)])
def test_max_and_min_of_bools_are_any_and_all(reduce, shape, axis, keepdims, device):
    x = RNG.random(shape) > 0.5
    fn = getattr(pb, reduce)
    got = pb.compile(lambda a: fn(a, axis=axis, keepdims=keepdims), x, mode="value",
                     device=device)(x)
    want = getattr(np, reduce)(x, axis=axis, keepdims=keepdims)
    assert np.asarray(got).dtype == np.bool_
    np.testing.assert_array_equal(got, want)


def test_abs_of_bools_is_the_identity():
    x = RNG.random(6) > 0.5
    got = pb.compile(pb.abs, x, mode="value")(x)
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, np.abs(x))


@pytest.mark.parametrize(("fn", "numpy_fn", "says"), [
    (lambda x: x - x, lambda x: x - x, "boolean subtract"),
    (lambda x: -x, lambda x: -x, "boolean negative"),
    (pb.sign, np.sign, "sign"),
])
def test_what_numpy_refuses_on_bools_is_refused(fn, numpy_fn, says):
    x = np.array([True, False])
    with pytest.raises(TypeError):
        numpy_fn(x)
    with pytest.raises(TypeError, match=says):
        pb.compile(fn, x, mode="value")


def test_bools_mixed_with_floats_still_differentiate():
    """A mask times a float is a float product: its gradient is the mask."""
    x = RNG.standard_normal(5)
    mask = x > 0
    np.testing.assert_allclose(pb.gradient(lambda v: pb.sum((v > 0) * v), x)[0],
                               mask.astype(float))
