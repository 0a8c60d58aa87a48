"""DSL functions outside any trace are exactly numpy."""

import numpy as np
import pytest

import pullback as pb

rng = np.random.default_rng(0)
X = rng.uniform(0.1, 0.9, (3, 4))
Y = rng.uniform(0.1, 0.9, (3, 4))

UNARY = ["exp", "log", "log1p", "expm1", "sin", "cos", "tan", "tanh", "sinh", "cosh",
         "arcsin", "arccos", "arctan", "sqrt", "abs", "sign", "square", "negative"]
BINARY = ["add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "arctan2"]


@pytest.mark.parametrize("name", UNARY)
def test_unary_is_numpy(name):
    np.testing.assert_array_equal(getattr(pb, name)(X), getattr(np, name)(X))


@pytest.mark.parametrize("name", BINARY)
def test_binary_is_numpy(name):
    np.testing.assert_array_equal(getattr(pb, name)(X, Y), getattr(np, name)(X, Y))


def test_reductions_and_shapes_are_numpy():
    np.testing.assert_array_equal(pb.sum(X, axis=1, keepdims=True), X.sum(1, keepdims=True))
    np.testing.assert_array_equal(pb.prod(X, axis=0), X.prod(0))
    np.testing.assert_array_equal(pb.mean(X), X.mean())
    np.testing.assert_array_equal(pb.max(X, axis=(0, 1)), X.max())
    np.testing.assert_array_equal(pb.cumsum(X, axis=1), np.cumsum(X, axis=1))
    np.testing.assert_array_equal(pb.matmul(X, Y.T), X @ Y.T)
    np.testing.assert_array_equal(pb.concatenate([X, Y], axis=1), np.concatenate([X, Y], 1))
    np.testing.assert_array_equal(pb.stack([X, Y]), np.stack([X, Y]))
    np.testing.assert_array_equal(pb.where(X > 0.5, X, Y), np.where(X > 0.5, X, Y))
    np.testing.assert_array_equal(pb.clip(X, 0.3, 0.6), np.clip(X, 0.3, 0.6))


def test_logsumexp_eager_matches_definition():
    want = np.log(np.sum(np.exp(X), axis=1))
    np.testing.assert_allclose(pb.logsumexp(X, axis=1), want, rtol=1e-14)
    big = np.array([1000.0, 1000.0])
    np.testing.assert_allclose(pb.logsumexp(big), 1000.0 + np.log(2.0), rtol=1e-14)
