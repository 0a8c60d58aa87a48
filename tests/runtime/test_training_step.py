"""A whole training step compiled into one native call: `pb.compile(step, model, x, y)`
where `step` takes a gradient and applies an optimiser, in place; and eager updates
with `pb.optimisers.update` compiled into the backward pass."""

from __future__ import annotations

import numpy as np
import pytest

import pullback as pb

O = pb.optimisers
RULES = [O.Descent(0.1), O.Momentum(0.05, 0.9), O.Nesterov(0.05), O.Adam(0.01),
         O.AdamW(0.01, decay=0.1)]


def _close(device: str) -> dict:
    return {"rtol": 1e-13, "atol": 1e-14} if device == "cpu" else {"rtol": 1e-10, "atol": 1e-12}


def _model(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"layers": [{"w": rng.normal(size=(5, 5)) / 2, "b": rng.normal(size=5)}
                       for _ in range(3)]}


def _dense(layer, h):
    return pb.tanh(h @ layer["w"] + layer["b"])


def _loss(model, x, y):
    h = x
    for layer in model["layers"]:
        h = _dense(layer, h)
    return pb.mean((h - y) ** 2)


def _data(seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(7, 5)), rng.normal(size=(7, 5))


def _copy(model: dict) -> dict:
    return {"layers": [{k: v.copy() for k, v in layer.items()} for layer in model["layers"]]}


def _assert_models_close(a: dict, b: dict, **tol) -> None:
    for la, lb in zip(a["layers"], b["layers"], strict=True):
        for k in la:
            np.testing.assert_allclose(la[k], lb[k], **tol)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: type(r).__name__)
def test_compiled_step_equals_the_uncompiled_composition(rule, device):
    x, y = _data()
    ref, model = _model(), _model()
    ref_state, state = O.setup(rule, ref), O.setup(rule, model)

    def step(model, x, y):
        loss, (g, _, _) = pb.withgradient(_loss, model, x, y)
        O.update(state, model, g)
        return loss

    c = pb.compile(step, _copy(model), x, y, device=device)
    assert c.mode == "value"
    for _ in range(4):
        want, (g, _, _) = pb.withgradient(_loss, ref, x, y)
        O.update(ref_state, ref, g)
        got = c(model, x, y)
        np.testing.assert_allclose(got, want, **_close(device))
    _assert_models_close(model, ref, **_close(device))


def test_the_step_is_one_native_call(monkeypatch):
    x, y = _data()
    model = _model()
    state = O.setup(O.Adam(0.01), model)

    def step(model, x, y):
        g = pb.gradient(_loss, model, x, y)[0]
        O.update(state, model, g)

    c = pb.compile(step, model, x, y)
    calls = []
    exe = c._compiled.executable
    run = exe.run
    monkeypatch.setattr(exe, "run", lambda inputs: calls.append(1) or run(inputs))
    c(model, x, y)
    assert calls == [1]
    assert "ad.callback" not in c.ir("trace")


def test_training_lowers_the_loss(device):
    x, y = _data()
    y = np.tanh(y)
    model = _model()
    state = O.setup(O.Adam(0.05), model)

    def step(model, x, y):
        loss, (g, _, _) = pb.withgradient(_loss, model, x, y)
        O.update(state, model, g)
        return loss

    c = pb.compile(step, model, x, y, device=device)
    losses = [float(c(model, x, y)) for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0]


# -- eager updates with pb.optimisers.update are compiled into the backward pass ------------


def _eager_loss(state, checkpoint: bool):
    def loss(model, x, y):
        h = x
        for i, layer in enumerate(model["layers"]):
            layer = pb.eager_update(state["layers"][i], layer, O.update)
            h = pb.checkpointed(_dense, layer, h) if checkpoint else _dense(layer, h)
        return pb.mean((h - y) ** 2)
    return loss


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("rule", RULES, ids=lambda r: type(r).__name__)
def test_compiled_eager_update_equals_gradient_then_update(rule, checkpoint, device):
    x, y = _data()
    ref, model = _model(), _model()
    ref_state, state = O.setup(rule, ref), O.setup(rule, model)
    c = pb.compile(_eager_loss(state, checkpoint), model, x, y, mode="withgradient",
                   device=device)
    assert "ad.eager_update" in c.ir("trace") and "ad.callback" not in c.ir("trace")
    for _ in range(3):
        want, (g, _, _) = pb.withgradient(_loss, ref, x, y)
        O.update(ref_state, ref, g)
        got, (gm, gx, gy) = c(model, x, y)
        np.testing.assert_allclose(got, want, **_close(device))
        assert all(v is None for layer in gm["layers"] for v in layer.values())
    _assert_models_close(model, ref, **_close(device))


def test_compiled_eager_update_runs_no_host_call_and_writes_in_place():
    x, y = _data()
    model = _model()
    state = O.setup(O.Momentum(0.1), model)
    c = pb.compile(_eager_loss(state, False), model, x, y)
    assert "pullback_host_call" not in c.llvm_ir
    lowered = c.ir("convert-kernels-to-loops")
    assert 'pullback.kernel = "copy"' not in lowered  # every write lands in place


def test_a_python_update_function_still_runs_on_the_host():
    x, y = _data()
    model = _model()
    seen = []

    def update(state, layer, grads):
        seen.append(sorted(grads))

    def loss(model, x, y):
        h = x
        for layer in model["layers"]:
            h = _dense(pb.eager_update(None, layer, update), h)
        return pb.mean((h - y) ** 2)

    c = pb.compile(loss, model, x, y)
    assert "ad.callback" in c.ir("trace")
    c(model, x, y)
    assert seen == [["b", "w"]] * 3


def test_eager_update_removes_the_parameter_gradients_from_the_peak():
    rng = np.random.default_rng(0)
    model = {"layers": [{"w": rng.normal(size=(64, 64)), "b": np.zeros(64)} for _ in range(4)]}
    x, y = rng.normal(size=(16, 64)), rng.normal(size=(16, 64))
    state = O.setup(O.Descent(0.01), model)
    plain = pb.compile(_loss, model, x, y).memory.peak_bytes
    eager = pb.compile(_eager_loss(state, False), model, x, y).memory.peak_bytes
    grads = 4 * (64 * 64 + 64) * 8
    # all parameter gradients leave the peak but the largest one, which is alive while
    # its own update runs
    assert plain - eager >= grads - (64 * 64 + 64) * 8
