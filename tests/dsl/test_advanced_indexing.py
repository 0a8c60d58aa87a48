"""Indexing follows numpy exactly: values against numpy, gradients against np.add.at.

The index expressions are generated: ints (negative too), slices (steps, negative
steps, empty), None, Ellipsis and one to three integer arrays (negative entries,
several dimensions, broadcasting), adjacent and separated by slices, None or Ellipsis.
Each runs with the index arrays closed over (constants) and passed as arguments
(traced integers, whose derivative is None).
"""

import itertools

import numpy as np
import pytest

import pullback as pb

SHAPE = (3, 4, 5)


def _entry(rng: np.random.Generator, n: int) -> object:
    kind = rng.choice(["int", "slice", "array", "array2d"], p=[0.25, 0.3, 0.3, 0.15])
    if kind == "int":
        return int(rng.integers(-n, n))
    if kind == "slice":
        start, stop = (None if rng.random() < 0.3 else int(rng.integers(-n, n)) for _ in "ab")
        step = [None, 1, 2, -1, -2][rng.integers(5)]
        return slice(start, stop, step)
    if kind == "array":
        return rng.integers(-n, n, size=int(rng.integers(1, 4)))
    return rng.integers(-n, n, size=(2, 1))


def _generated(count: int, seed: int = 0) -> list[tuple]:
    """Index tuples numpy accepts on SHAPE with at least one integer array."""
    rng = np.random.default_rng(seed)
    x = np.zeros(SHAPE)
    found: list[tuple] = []
    while len(found) < count:
        ndims = int(rng.integers(1, len(SHAPE) + 1))
        entries = [_entry(rng, SHAPE[d]) for d in range(ndims)]
        if rng.random() < 0.3:
            entries.insert(int(rng.integers(0, len(entries) + 1)), None)
        if rng.random() < 0.3 and ndims < len(SHAPE):
            entries.insert(int(rng.integers(0, len(entries) + 1)), Ellipsis)
        index = tuple(entries)
        if not any(isinstance(e, np.ndarray) for e in index):
            continue
        try:
            x[index]
        except IndexError:
            continue  # arrays that do not broadcast together
        found.append(index)
    return found


# Hand-picked cases first: the example, adjacency through None / Ellipsis.
CASES = [
    (0, slice(None), [1, 2]),
    (slice(None), [0, 2], [1, -1]),
    ([0, 1], Ellipsis, [1, 2]),
    (slice(None), [0, 1, 2], Ellipsis, [1, 2, 3]),
    ([0, 2], None, [1, 3]),
    (Ellipsis, [0, 1], [4, -5]),
    (np.array([[0], [2]]), slice(None, None, -2), np.array([1, 2, 3])),
    (np.array(1), slice(None), 2),
    (slice(1, None), np.array([[0, 1], [2, 3]])),
    ([-1, 0, -3],),
    *_generated(60),
]


def _ids(case: tuple) -> str:
    return "[" + ", ".join(
        "..." if e is Ellipsis else "None" if e is None else
        f"{e.start}:{e.stop}:{e.step}" if isinstance(e, slice) else
        np.asarray(e).tolist().__repr__() for e in case) + "]"


def _as_arrays(index: tuple) -> tuple:
    return tuple(np.asarray(e) if isinstance(e, list) else e for e in index)


def _expected_gradient(index: tuple, w: np.ndarray) -> np.ndarray:
    g = np.zeros(SHAPE)
    np.add.at(g, index, w)
    return g


@pytest.mark.parametrize("index", CASES, ids=[_ids(c) for c in CASES])
def test_closed_over_indices_match_numpy(index):
    index = _as_arrays(index)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(SHAPE)
    want = x[index]
    f = pb.compile(lambda x: x[index], x, mode="value")
    got = f(x)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    w = rng.standard_normal(want.shape)
    (g,) = pb.gradient(lambda x: pb.sum(w * x[index]), x)
    np.testing.assert_allclose(g, _expected_gradient(index, w), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("index", CASES[:40], ids=[_ids(c) for c in CASES[:40]])
def test_traced_integer_indices_match_numpy(index):
    """The integer arrays are arguments: traced int64 values, derivative None."""
    index = _as_arrays(index)
    slots = [k for k, e in enumerate(index) if isinstance(e, np.ndarray)]
    arrays = [index[k] for k in slots]

    def at(x, *idx):
        entries = list(index)
        for k, i in zip(slots, idx):
            entries[k] = i
        return x[tuple(entries)]

    rng = np.random.default_rng(2)
    x = rng.standard_normal(SHAPE)
    want = x[index]
    got = pb.compile(at, x, *arrays, mode="value")(x, *arrays)
    np.testing.assert_array_equal(got, want)
    w = rng.standard_normal(want.shape)
    grads = pb.gradient(lambda x, *idx: pb.sum(w * at(x, *idx)), x, *arrays)
    np.testing.assert_allclose(grads[0], _expected_gradient(index, w), rtol=1e-12, atol=1e-12)
    assert grads[1:] == (None,) * len(arrays)


def test_cross_entropy_gather_value_and_gradient(device):
    """`z[np.arange(n), labels]` with labels an argument: the usual classifier loss."""
    rng = np.random.default_rng(3)
    n, k = 6, 4
    z = rng.standard_normal((n, k))
    labels = rng.integers(0, k, size=n)

    def loss(z, labels):
        logp = z - pb.log(pb.sum(pb.exp(z), axis=1, keepdims=True))
        return -pb.mean(logp[np.arange(n), labels])

    val, (gz, gl) = pb.withgradient(loss, z, labels, device=device)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert val == pytest.approx(-np.mean(np.log(p[np.arange(n), labels])), rel=1e-12)
    onehot = np.eye(k)[labels]
    np.testing.assert_allclose(gz, (p - onehot) / n, rtol=1e-10, atol=1e-12)
    assert gl is None


@pytest.mark.parametrize("index", list(itertools.islice(CASES, 8)),
                         ids=[_ids(c) for c in itertools.islice(CASES, 8)])
def test_indexing_on_each_device(index, device):
    index = _as_arrays(index)
    x = np.random.default_rng(4).standard_normal(SHAPE)
    w = np.random.default_rng(5).standard_normal(x[index].shape)
    val, (g,) = pb.withgradient(lambda x: pb.sum(w * x[index]), x, device=device)
    assert val == pytest.approx(np.sum(w * x[index]), rel=1e-12)
    np.testing.assert_allclose(g, _expected_gradient(index, w), rtol=1e-12, atol=1e-12)


def test_index_arrays_that_do_not_broadcast_are_refused():
    with pytest.raises(IndexError, match="could not be broadcast"):
        pb.gradient(lambda x: pb.sum(x[[0, 1], :, [0, 1, 2]]), np.ones(SHAPE))


def test_out_of_bounds_constant_index_is_refused():
    with pytest.raises(IndexError, match="out of bounds"):
        pb.gradient(lambda x: pb.sum(x[[0, 3], [0, 1]]), np.ones(SHAPE))
