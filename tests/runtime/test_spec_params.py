"""The "Params, Grads, implicit mode" section of spec/API.md, with its exact numbers;
Grads algebra, IdDict, copyto and pb.Array checked against numpy and mathematics."""

import pickle

import numpy as np
import pytest
from finite_differences import central_difference

import pullback as pb


@pytest.fixture(autouse=True)
def on_each_device(device):
    """Every test here runs on each device."""
    with pb.device(device):
        yield




# -- the spec's examples -------------------------------------------------------------------


def test_withgradient_of_params():
    w = pb.array([3.0])
    res = pb.withgradient(lambda: pb.sum(w ** 2), pb.Params([w]))
    assert res.val == 9.0 and isinstance(res.val, float)
    np.testing.assert_array_equal(res.grad[w], [6.0])
    assert isinstance(res.grad, pb.Grads)


def test_grads_algebra_example():
    rng = np.random.default_rng(1)
    w, x1, x2, b = (pb.array(rng.random(2)) for _ in range(4))
    gs1 = pb.gradient(lambda: pb.sum(pb.tanh(w * x1 + b)), pb.Params([w, b]))
    gs2 = pb.gradient(lambda: pb.sum(pb.tanh(w * x2 + b)), pb.Params([w, b]))
    # d/dw sum(tanh(w x + b)) = (1 - tanh²) x, d/db = 1 - tanh²
    d1, d2 = 1 - np.tanh(w * x1 + b) ** 2, 1 - np.tanh(w * x2 + b) ** 2
    np.testing.assert_allclose(gs1[w], d1 * x1, rtol=1e-12)
    np.testing.assert_allclose(gs1[b], d1, rtol=1e-12)
    np.testing.assert_allclose(gs2[w], d2 * x2, rtol=1e-12)
    gs = gs1 + gs2
    assert np.allclose(gs[w], gs1[w] + gs2[w]) and np.allclose(gs[b], gs1[b] + gs2[b])
    noise = {p: rng.standard_normal(p.shape) for p in gs.keys()}
    before = {p: gs[p].copy() for p in gs}
    gs += pb.IdDict(noise)
    for p in gs:
        np.testing.assert_allclose(gs[p], before[p] + noise[p])
    clipped = gs.map(lambda g: np.clip(g, -0.1, 0.1))
    assert isinstance(clipped, pb.Grads)
    for p in gs:
        np.testing.assert_array_equal(clipped[p], np.clip(gs[p], -0.1, 0.1))
    arrays = gs.values()
    gs.foreach(lambda g: np.clip(g, -0.1, 0.1, out=g))
    for p, g in gs.items():
        assert np.all(np.abs(g) <= 0.1)
        np.testing.assert_array_equal(g, clipped[p])
    assert all(a is g for a, g in zip(arrays, gs.values()))  # changed in place
    gs3 = pb.gradient(lambda: pb.sum(pb.tanh(w * x2)), pb.Params([w]))
    with pytest.raises(ValueError, match="different parameter sets"):
        gs1 + gs3


# -- implicit mode ---------------------------------------------------------------------


def test_integer_params_and_slices():
    xs = pb.array([[1, 2], [3, 4]])
    ys = pb.array([5, 7, 9])
    gs = pb.gradient(lambda: pb.sum(ys[0:2] + pb.sum(xs ** 2)), pb.Params([xs, ys]))
    # each of the 2 outputs adds sum(xs²): 2 * 2xs; ys[0], ys[1] appear once
    np.testing.assert_array_equal(gs[xs], [[4.0, 8.0], [12.0, 16.0]])
    np.testing.assert_array_equal(gs[ys], [1.0, 1.0, 0.0])
    assert gs[xs].dtype == np.float64


def test_gradient_matches_finite_differences_and_other_arrays_stay_constant():
    rng = np.random.default_rng(2)
    W, b = pb.array(rng.standard_normal((2, 3))), pb.array(rng.standard_normal(2))
    x = rng.standard_normal(3)        # a plain closed-over array: not differentiated
    v = pb.array(rng.standard_normal(2))  # an Array outside Params: not differentiated

    def loss():
        return pb.sum(pb.tanh(W @ x + b) ** 2 * v) + pb.sum(W.T.sum(axis=1) * x)

    gs = pb.gradient(loss, pb.Params([W, b]))
    assert len(gs) == 2 and W in gs and b in gs and v not in gs

    def at_W(w):
        return np.sum(np.tanh(w @ x + b) ** 2 * v) + np.sum(w.T.sum(axis=1) * x)

    def at_b(c):
        return np.sum(np.tanh(W @ x + c) ** 2 * v) + np.sum(W.T.sum(axis=1) * x)

    np.testing.assert_allclose(gs[W], central_difference(at_W, np.asarray(W)), rtol=1e-6)
    np.testing.assert_allclose(gs[b], central_difference(at_b, np.asarray(b)), rtol=1e-6)


def test_unread_parameter_gets_none():
    w, unused = pb.array([1.0, 2.0]), pb.array([3.0])
    gs = pb.gradient(lambda: pb.sum(w * w), pb.Params([w, unused]))
    assert gs[unused] is None
    np.testing.assert_array_equal(gs[w], [2.0, 4.0])
    assert [p is q for p, q in zip(gs.keys(), [w, unused])] == [True, True]


def test_updated_parameters_are_read_again_through_the_cache():
    w = pb.array([1.0, 2.0])
    ps = pb.Params([w])
    first = pb.gradient(lambda: pb.sum(w ** 3), ps)[w]
    w -= 0.5 * first  # in place: w stays the same parameter
    assert isinstance(w, pb.Array) and w in ps
    before = pb.cache_info()
    second = pb.gradient(lambda: pb.sum(w ** 3), ps)[w]
    assert pb.cache_info().hits == before.hits + 1
    np.testing.assert_allclose(first, [3.0, 12.0])
    np.testing.assert_allclose(second, 3 * np.asarray(w) ** 2)


def test_pullback_with_params():
    w = pb.array([1.0, -2.0, 0.5])
    y, back = pb.pullback(lambda: w * w, pb.Params([w]))
    np.testing.assert_array_equal(y, [1.0, 4.0, 0.25])
    gs = back(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(gs[w], [2.0, -8.0, 3.0])


def test_params_mixed_with_arguments_raises():
    w = pb.array([1.0])
    with pytest.raises(TypeError, match="only argument"):
        pb.gradient(lambda x: pb.sum(x * w), np.ones(1), pb.Params([w]))


# -- Params, Grads, IdDict ----------------------------------------------------------------


def test_params_rejects_plain_numpy_arrays():
    with pytest.raises(TypeError, match=r"pb\.array"):
        pb.Params([np.zeros(3)])


def test_params_is_an_identity_set_in_order():
    a, b = pb.array([1.0]), pb.array([1.0])  # equal values, different parameters
    ps = pb.Params([a, b, a])
    assert len(ps) == 2 and list(ps)[0] is a and list(ps)[1] is b
    assert a in ps and pb.array([1.0]) not in ps and ps.size == 2


def test_grads_arithmetic_keeps_keys():
    a, b = pb.array([1.0, 2.0]), pb.array([[3.0]])
    ps = pb.Params([a, b])
    gs = pb.gradient(lambda: pb.sum(a ** 2) + pb.sum(b * 3.0), ps)
    np.testing.assert_array_equal(gs[a], [2.0, 4.0])
    np.testing.assert_array_equal(gs[b], [[3.0]])
    for scaled in (gs * 2.0, 2.0 * gs):
        np.testing.assert_array_equal(scaled[a], [4.0, 8.0])
        np.testing.assert_array_equal(scaled[b], [[6.0]])
    diff = gs - gs * 0.5
    np.testing.assert_array_equal(diff[a], [1.0, 2.0])
    np.testing.assert_array_equal(gs[a], [2.0, 4.0])  # value-based: gs unchanged
    plus = gs + pb.IdDict({a: np.ones(2), b: np.ones((1, 1))})
    np.testing.assert_array_equal(plus[a], [3.0, 5.0])
    with pytest.raises(ValueError, match="different parameter sets"):
        gs + pb.IdDict({a: np.ones(2)})
    with pytest.raises(KeyError):
        gs[pb.array([1.0, 2.0])]


def test_iddict_keys_by_identity():
    a, b = np.zeros(2), np.zeros(2)
    d = pb.IdDict([(a, 1), (b, 2)])
    assert d[a] == 1 and d[b] == 2 and len(d) == 2 and a in d and np.zeros(2) not in d
    del d[a]
    assert list(d) == [b]
    with pytest.raises(KeyError):
        d[a]


# -- copyto ---------------------------------------------------------------------------


def test_copyto_round_trips_in_row_major_params_order():
    a, b = pb.array([[1.0, 2.0], [3.0, 4.0]]), pb.array([5.0])
    ps = pb.Params([a, b])
    vec = np.zeros(5)
    assert pb.copyto(vec, ps) is vec
    np.testing.assert_array_equal(vec, [1.0, 2.0, 3.0, 4.0, 5.0])
    pb.copyto(ps, np.array([9.0, 8.0, 7.0, 6.0, 5.0]))
    np.testing.assert_array_equal(a, [[9.0, 8.0], [7.0, 6.0]])
    assert list(ps)[0] is a  # written in place
    gs = pb.gradient(lambda: pb.sum(a * a), ps)  # b unread: its slot counts as zeros
    pb.copyto(vec, gs)
    np.testing.assert_array_equal(vec, [18.0, 16.0, 14.0, 12.0, 0.0])
    pb.copyto(gs, np.arange(5.0))
    np.testing.assert_array_equal(gs[a], [[0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_array_equal(gs[b], [4.0])


def test_copyto_length_mismatch_and_bad_types():
    ps = pb.Params([pb.array([1.0, 2.0])])
    with pytest.raises(ValueError, match="length 3"):
        pb.copyto(np.zeros(3), ps)
    with pytest.raises(ValueError, match="length 1"):
        pb.copyto(ps, np.zeros(1))
    with pytest.raises(TypeError, match="copyto"):
        pb.copyto([0.0, 0.0], ps)


# -- pb.Array ---------------------------------------------------------------------------


def test_array_is_a_numpy_array():
    a = pb.array([[1.0, 2.0], [3.0, 4.0]])
    assert isinstance(a, np.ndarray) and isinstance(a, pb.Array)
    assert type(np.asarray(a)) is np.ndarray
    for derived in (a + 1, np.tanh(a), a[0], np.sum(a, axis=0), a @ a):
        assert type(derived) is np.ndarray
    np.testing.assert_array_equal(a @ a, np.array([[7.0, 10.0], [15.0, 22.0]]))
    back = pickle.loads(pickle.dumps(a))
    assert type(back) is pb.Array and back is not a
    np.testing.assert_array_equal(back, a)
    assert {a: 1}[a] == 1  # hashable by identity
