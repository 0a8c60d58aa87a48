"""Integer array arguments keep their dtype in the trace, with numpy's semantics.

They index, count and compare as numpy's int64; where they meet floating-point
arithmetic their derivative is the float64 derivative through numpy's conversion;
used only as indices their derivative is None. Nothing is promoted in value mode.
Python ints are promoted to float64. Expected values come from numpy formulas.
"""

import numpy as np
import pytest

import pullback as pb

RNG = np.random.default_rng(0)
W = RNG.standard_normal(5)
IDS = np.array([3, 0, 3, 4, 1])
E = RNG.standard_normal((6, 3))


def _f(w, ids):
    return pb.sum(pb.tanh(w[ids]) * ids)


def _f_value(w, ids):
    return float(np.sum(np.tanh(w[ids]) * ids))


def _f_grads(w, ids):
    t = np.tanh(w[ids])
    gw = np.zeros_like(w)
    np.add.at(gw, ids, (1 - t ** 2) * ids)
    return gw, t


def test_embedding_lookup_gradient(device):
    ids = np.array([2, 5, 2, 0])
    gE, gids = pb.gradient(lambda E, ids: pb.sum(E[ids] ** 2), E, ids, device=device)
    want = np.zeros_like(E)
    np.add.at(want, ids, 2 * E[ids])
    np.testing.assert_allclose(gE, want, rtol=1e-14)
    assert gids is None


def test_index_and_arithmetic_use(device):
    """Used both as an index and in arithmetic: the derivative is the arithmetic part."""
    val, (gw, gids) = pb.withgradient(_f, W, IDS, device=device)
    assert val == pytest.approx(_f_value(W, IDS), rel=1e-14)
    want_w, want_ids = _f_grads(W, IDS)
    np.testing.assert_allclose(gw, want_w, rtol=1e-14)
    assert gids.dtype == np.float64
    np.testing.assert_allclose(gids, want_ids, rtol=1e-14)


def test_traced_dtype_is_int64_and_comparisons_count():
    seen = {}

    def f(x, k):
        seen["dtype"] = k.dtype
        return pb.sum(pb.where(k > 1, x, 0.0)) + pb.sum(k == 2)

    g = pb.gradient(f, np.ones(4), np.array([0, 2, 3, 2]))
    assert seen["dtype"] == np.int64
    np.testing.assert_array_equal(g[0], [0.0, 1.0, 1.0, 1.0])
    assert g[1] is None


def test_value_mode_keeps_int64_exactly(device):
    big = np.array([2 ** 60 + 1, -7, 3])
    c = pb.compile(lambda i: i * 3 + 1, big, mode="value", device=device)
    out = c(big)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, big * 3 + 1)
    x = np.arange(10.0)
    gather = pb.compile(lambda x, i, j: x[i] + x[j] * i, x, IDS, IDS[::-1].copy(),
                        mode="value", device=device)
    np.testing.assert_allclose(gather(x, IDS, IDS[::-1].copy()),
                               x[IDS] + x[IDS[::-1]] * IDS)


def test_integer_arithmetic_is_differentiated_as_numbers():
    """Spec examples: integer arrays in integer arithmetic get float64 derivatives."""
    (j,) = pb.jacobian(lambda a: 100 * a[0:3] ** 2, np.arange(1, 8))
    want = np.zeros((3, 7))
    want[[0, 1, 2], [0, 1, 2]] = [200.0, 400.0, 600.0]
    np.testing.assert_array_equal(j, want)
    h = pb.hessian(lambda x: pb.sum(x ** 3), np.array([[1, 2], [3, 4]]))
    np.testing.assert_array_equal(h, np.diag([6.0, 12.0, 18.0, 24.0]))
    g = pb.gradient(lambda x, k: pb.sum(x * k), np.ones(3, np.float32), np.array([1, 2, 3]))
    assert g[0].dtype == np.float32 and g[1].dtype == np.float64
    np.testing.assert_array_equal(g[0], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(g[1], [1.0, 1.0, 1.0])


def test_python_ints_are_promoted():
    assert pb.gradient(lambda x, y: x * y, 3, 4) == (4.0, 3.0)
    assert pb.gradient(lambda x: x * 2, np.int64(3)) == (2.0,)


@pytest.mark.parametrize("mode", ["gradient", "withgradient", "pullback"])
def test_compiled_reverse_modes(mode, device):
    c = pb.compile(_f, W, IDS, mode=mode, device=device)
    want_w, want_ids = _f_grads(W, IDS)
    if mode == "pullback":
        y, back = c(W, IDS)
        assert y == pytest.approx(_f_value(W, IDS), rel=1e-14)
        gw, gids = back(2.0)
        np.testing.assert_allclose(gw, 2 * want_w, rtol=1e-14)
        np.testing.assert_allclose(gids, 2 * want_ids, rtol=1e-14)
        return
    out = c(W, IDS)
    gw, gids = out if mode == "gradient" else out.grad
    np.testing.assert_allclose(gw, want_w, rtol=1e-14)
    np.testing.assert_allclose(gids, want_ids, rtol=1e-14)
    ids2 = np.array([0, 0, 1, 2, 2])
    gw2, _ = c(W, ids2) if mode == "gradient" else c(W, ids2).grad
    np.testing.assert_allclose(gw2, _f_grads(W, ids2)[0], rtol=1e-14)


def test_compiled_jacobian_and_second_derivatives(device):
    def vec(w, ids):
        return pb.tanh(w[ids]) * ids

    jw, jids = pb.compile(vec, W, IDS, mode="jacobian", device=device)(W, IDS)
    t = np.tanh(W[IDS])
    want_w = np.zeros((5, 5))
    want_w[np.arange(5), IDS] = (1 - t ** 2) * IDS
    np.testing.assert_allclose(jw, want_w, rtol=1e-14)
    np.testing.assert_allclose(jids, np.diag(t), rtol=1e-14)
    hw, hids = pb.compile(_f, W, IDS, mode="diaghessian", device=device)(W, IDS)
    want = np.zeros(5)
    np.add.at(want, IDS, -2 * t * (1 - t ** 2) * IDS)
    np.testing.assert_allclose(hw, want, rtol=1e-13)
    np.testing.assert_array_equal(hids, np.zeros(5))
    k = np.array([1, -2, 3])
    for mode in ("hessian", "hessian_reverse"):
        h = pb.compile(lambda k: pb.sum(k ** 3), k, mode=mode, device=device)(k)
        np.testing.assert_allclose(h, np.diag(6.0 * k), rtol=1e-14)


def test_integer_params_are_traced_as_integers():
    E_ = pb.array(E)
    ids = pb.array([1, 4, 4])
    gs = pb.gradient(lambda: pb.sum(E_[ids] * ids[:, None]), pb.Params([E_, ids]))
    want = np.zeros_like(E)
    np.add.at(want, np.asarray(ids), np.ones((3, 3)) * np.asarray(ids)[:, None])
    np.testing.assert_allclose(gs[E_], want, rtol=1e-14)
    np.testing.assert_allclose(gs[ids], E[[1, 4, 4]].sum(axis=1), rtol=1e-14)


def test_gradient_inside_a_compiled_function_with_integer_arguments():
    def step(E, ids):
        return pb.gradient(lambda E, ids: pb.sum(E[ids] ** 2), E, ids)[0]

    ids = np.array([0, 5, 5])
    c = pb.compile(step, E, ids, mode="value")
    want = np.zeros_like(E)
    np.add.at(want, ids, 2 * E[ids])
    np.testing.assert_allclose(c(E, ids), want, rtol=1e-14)


def test_values_beyond_float64_precision_are_refused_where_differentiated():
    with pytest.raises(ValueError, match=r"2\*\*53"):
        pb.gradient(lambda x, i: pb.sum(x * i), np.ones(2), np.array([2 ** 60, 1]))


def test_in_place_write_into_an_integer_argument():
    """Written in place, an integer argument is passed as it is (value mode)."""
    def bump(i):
        i += 2
        return pb.sum(i)

    k = np.array([1, 2, 3])
    c = pb.compile(bump, k)  # writes its input: value mode
    assert c(k) == 12
    np.testing.assert_array_equal(k, [3, 4, 5])
    with pytest.raises(NotImplementedError, match="integer array argument"):
        pb.gradient(lambda x, i: bump(i) * pb.sum(x), np.ones(2), np.array([1, 2]))


def test_forwarddiff_and_checkpointed_regions_keep_integers():
    """An integer array entering a region stays an integer array and keeps its derivative."""
    x = np.arange(5.0)
    k = np.array([1, 2, 4])

    def forward(x, k):
        return pb.sum(pb.forwarddiff(lambda k: x[k] * k ** 2, k))

    def checkpointed(x, k):
        return pb.sum(pb.checkpointed(lambda x, k: x[k] * k ** 2, x, k))

    (_, gk) = pb.gradient(forward, x, k)   # x is closed over: no derivative
    np.testing.assert_allclose(gk, 2 * x[k] * k, rtol=1e-14)
    gx, gk = pb.gradient(checkpointed, x, k)
    want = np.zeros(5)
    want[k] = k ** 2
    np.testing.assert_allclose(gx, want, rtol=1e-14)
    np.testing.assert_allclose(gk, 2 * x[k] * k, rtol=1e-14)


def test_compiled_signature_keeps_the_integer_dtype():
    c = pb.compile(_f, W, IDS)  # no mode: a gradient, since _f writes nothing
    np.testing.assert_allclose(c(W, IDS)[1], _f_grads(W, IDS)[1], rtol=1e-14)
    with pytest.raises(TypeError, match="int64"):
        c(W, IDS.astype(np.float64))
    np.testing.assert_allclose(c(W, IDS.astype(np.int32))[0], _f_grads(W, IDS)[0], rtol=1e-14)
