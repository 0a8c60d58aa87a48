"""`pb.eager_update`: optimiser steps applied in the backward pass, in place.

Expected values come from an explicit `pb.gradient` followed by
`pb.optimisers.update` on a copy of the model (bit-for-bit on the CPU)."""

import copy

import numpy as np
import pytest

import pullback as pb

OPTIMISERS = [
    pb.optimisers.Descent(0.1),
    pb.optimisers.Momentum(0.05, 0.9),
    pb.optimisers.Nesterov(0.05, 0.8),
    pb.optimisers.Adam(1e-2),
    pb.optimisers.AdamW(1e-2, decay=0.1),
]


@pytest.fixture(autouse=True)
def on_each_device(device):
    """Every test here runs on each device."""
    with pb.device(device):
        yield


def _dense(layer, h):
    return pb.tanh(h @ layer["w"] + layer["b"])


def _model(seed=0, layers=3, width=4):
    rng = np.random.default_rng(seed)
    return {"layers": [{"w": rng.standard_normal((width, width)) / 2,
                        "b": rng.standard_normal(width)} for _ in range(layers)]}


def _data(seed=1, width=4):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((5, width)), rng.standard_normal((5, width))


def _plain_loss(model, x, y):
    h = x
    for layer in model["layers"]:
        h = _dense(layer, h)
    return pb.mean((h - y) ** 2)


def _eager_loss(state, checkpoint):
    def loss(model, x, y):
        h = x
        for i, layer in enumerate(model["layers"]):
            layer = pb.eager_update(state["layers"][i], layer, pb.optimisers.update)
            h = pb.checkpointed(_dense, layer, h) if checkpoint else _dense(layer, h)
        return pb.mean((h - y) ** 2)

    return loss


def _close(a, b, device):
    if device == "cpu":
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def _assert_models(model, ref, device):
    for got, want in zip(model["layers"], ref["layers"]):
        _close(got["w"], want["w"], device)
        _close(got["b"], want["b"], device)


@pytest.mark.parametrize("opt", OPTIMISERS, ids=lambda o: type(o).__name__)
@pytest.mark.parametrize("checkpoint", [False, True], ids=["plain", "checkpointed"])
def test_equals_explicit_optimiser_step(opt, checkpoint, device):
    model, (x, y) = _model(), _data()
    ref = copy.deepcopy(model)
    state, ref_state = pb.optimisers.setup(opt, model), pb.optimisers.setup(opt, ref)
    loss = _eager_loss(state, checkpoint)
    for _ in range(3):
        g = pb.gradient(loss, model, x, y)
        ref_g = pb.gradient(_plain_loss, ref, x, y)
        pb.optimisers.update(ref_state, ref, ref_g[0])
        assert g[0] == {"layers": [{"w": None, "b": None}] * 3}
        _close(g[1], ref_g[1], device)          # from the forward (old) values
        assert g[2] is not None
        _close(g[2], ref_g[2], device)
        _assert_models(model, ref, device)
    assert not np.array_equal(model["layers"][0]["w"], _model()["layers"][0]["w"])


def test_update_inside_checkpointed(device):
    opt = pb.optimisers.Momentum(0.1, 0.5)
    model, (x, y) = _model(), _data()
    ref = copy.deepcopy(model)
    state, ref_state = pb.optimisers.setup(opt, model), pb.optimisers.setup(opt, ref)

    def block(i, layer, h):
        return _dense(pb.eager_update(state["layers"][i], layer, pb.optimisers.update), h)

    def loss(model, x, y):
        h = x
        for i, layer in enumerate(model["layers"]):
            h = pb.checkpointed(block, i, layer, h)
        return pb.mean((h - y) ** 2)

    for _ in range(2):
        g = pb.gradient(loss, model, x, y)
        ref_g = pb.gradient(_plain_loss, ref, x, y)
        pb.optimisers.update(ref_state, ref, ref_g[0])
        assert g[0] == {"layers": [{"w": None, "b": None}] * 3}
        _close(g[1], ref_g[1], device)
        _assert_models(model, ref, device)


def test_only_some_parameters_and_withgradient(device):
    w, v = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.2, 0.1])
    state = pb.optimisers.setup(pb.optimisers.Descent(0.25), w)
    w0 = w.copy()
    res = pb.withgradient(
        lambda w, v: pb.sum(pb.eager_update(state, w, pb.optimisers.update) * v ** 2), w, v)
    assert res.val == pytest.approx(float(np.sum(w0 * v ** 2)), rel=1e-15)
    assert res.grad[0] is None
    np.testing.assert_allclose(res.grad[1], 2 * w0 * v, rtol=1e-15)
    np.testing.assert_allclose(w, w0 - 0.25 * v ** 2, rtol=1e-15)


def test_implicit_params(device):
    w, b = pb.array([1.0, 2.0]), pb.array([0.5])
    state = pb.optimisers.setup(pb.optimisers.Descent(0.5), w)
    w0 = np.array(w)
    gs = pb.gradient(lambda: pb.sum(pb.eager_update(state, w, pb.optimisers.update) ** 2 * b),
                     pb.Params([w, b]))
    assert gs[w] is None
    np.testing.assert_allclose(gs[b], [np.sum(w0 ** 2)])
    np.testing.assert_allclose(w, w0 - 0.5 * 2 * w0 * 0.5)


def test_python_update_function(device):
    w = np.array([1.0, 2.0, 3.0])
    seen = []

    def update(state, model, grad):
        seen.append((state, grad.copy()))
        model -= state * grad

    g = pb.gradient(lambda w: pb.sum(pb.eager_update(0.5, w, update) ** 2), w)
    assert g == (None,)
    assert len(seen) == 1 and seen[0][0] == 0.5
    np.testing.assert_allclose(seen[0][1], [2.0, 4.0, 6.0])
    np.testing.assert_allclose(w, [0.0, 0.0, 0.0])


def test_compiled_gradient_updates_each_call(device):
    opt = pb.optimisers.Adam(1e-2)
    model, (x, y) = _model(), _data()
    ref = copy.deepcopy(model)
    state, ref_state = pb.optimisers.setup(opt, model), pb.optimisers.setup(opt, ref)
    step = pb.compile(_eager_loss(state, True), model, x, y, mode="gradient")
    for _ in range(3):
        step(model, x, y)
        pb.optimisers.update(ref_state, ref, pb.gradient(_plain_loss, ref, x, y)[0])
        _assert_models(model, ref, device)


def test_memory_peak_drops(device):
    model, (x, y) = _model(layers=4, width=16), _data(width=16)
    state = pb.optimisers.setup(pb.optimisers.Descent(0.1), model)
    plain = pb.compile(_plain_loss, model, x, y, mode="gradient")
    eager = pb.compile(_eager_loss(state, False), model, x, y, mode="gradient")
    assert eager.memory.peak_bytes < plain.memory.peak_bytes


def test_shared_parameters_rejected(device):
    w = np.ones(3)
    state = pb.optimisers.setup(pb.optimisers.Descent(0.1), w)

    def loss(w):
        a = pb.eager_update(state, w, pb.optimisers.update)
        b = pb.eager_update(state, w, pb.optimisers.update)
        return pb.sum(a * b)

    with pytest.raises(ValueError, match="already updated by another eager_update"):
        pb.gradient(loss, w)
    np.testing.assert_array_equal(w, np.ones(3))


def test_computed_value_rejected(device):
    state = pb.optimisers.setup(pb.optimisers.Descent(0.1), np.ones(2))
    with pytest.raises(ValueError, match="not one of its inputs"):
        pb.gradient(lambda w: pb.sum(pb.eager_update(state, 2 * w, pb.optimisers.update)),
                    np.ones(2))


def test_closed_over_array_rejected(device):
    w = np.ones(2)
    state = pb.optimisers.setup(pb.optimisers.Descent(0.1), w)
    with pytest.raises(ValueError, match="not an input of the differentiated function"):
        pb.gradient(lambda x: pb.sum(pb.eager_update(state, w, pb.optimisers.update) * x),
                    np.ones(2))


class _WrongShape(pb.optimisers.Descent):
    def __call__(self, param, grad, state):
        return pb.concatenate([param, param]), None


def test_update_of_wrong_shape_raises(device):
    w = np.array([1.0, 2.0])
    state = pb.optimisers.setup(_WrongShape(0.1), w)
    with pytest.raises(ValueError, match=r"new parameter of shape \(4,\).*shape \(2,\)"):
        pb.gradient(lambda w: pb.sum(pb.eager_update(state, w, pb.optimisers.update)), w)
    np.testing.assert_array_equal(w, [1.0, 2.0])


def test_number_argument_rejected(device):
    with pytest.raises(TypeError, match="writeable floating-point numpy array"):
        pb.gradient(lambda w: pb.eager_update(None, w, lambda s, m, g: None) ** 2, 3.0)


def test_identity_outside_a_trace():
    w = np.ones(2)
    assert pb.eager_update(None, w, pb.optimisers.update) is w


@pytest.mark.parametrize("derivative", [pb.jacobian, pb.hessian])
def test_second_derivatives_and_jacobians_refused(derivative, device):
    w = np.ones(2)
    state = pb.optimisers.setup(pb.optimisers.Descent(0.1), w)
    with pytest.raises(NotImplementedError, match="one backward pass"):
        derivative(lambda w: pb.sum(pb.eager_update(state, w, pb.optimisers.update) ** 3), w)
    np.testing.assert_array_equal(w, np.ones(2))


def test_forward_value_changes_nothing(device):
    w = np.array([1.0, 2.0])
    state = pb.optimisers.setup(pb.optimisers.Descent(0.1), w)
    f = pb.compile(lambda w: pb.sum(pb.eager_update(state, w, pb.optimisers.update) ** 2), w,
                   mode="value")
    assert f(w) == 5.0
    np.testing.assert_array_equal(w, [1.0, 2.0])


def test_python_update_gets_the_model_structure(device):
    model = {"w": np.array([1.0, 2.0]), "unused": np.array([3.0]), "name": "layer"}
    calls = []

    def update(state, m, grads):
        calls.append((m, grads))

    def loss(model):
        model = pb.eager_update("s", model, update)
        return pb.sum(model["w"] ** 2)

    g = pb.gradient(loss, model)
    assert g == ({"w": None, "unused": None, "name": None},)
    (m, grads), = calls
    assert m["w"] is model["w"] and m["unused"] is model["unused"] and m["name"] == "layer"
    np.testing.assert_allclose(grads["w"], [2.0, 4.0])
    assert grads["unused"] is None and grads["name"] is None


def test_traces_are_not_kept_alive(device):
    import gc
    import weakref

    from pullback.dsl.trace import current_trace

    w = np.ones(2)
    state = pb.optimisers.setup(pb.optimisers.Descent(0.1), w)
    traces = []

    def loss(w):
        traces.append(weakref.ref(current_trace()))
        return pb.sum(pb.eager_update(state, w, pb.optimisers.update) ** 2)

    pb.gradient(loss, w)
    gc.collect()
    assert traces[0]() is None
