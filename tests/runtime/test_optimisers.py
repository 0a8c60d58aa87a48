"""pb.optimisers: each rule against a hand-written numpy reference, in-place semantics,
pytrees, skipped None gradients, bad input, a training loop, and tracing the rules."""

import dataclasses
from typing import NamedTuple

import numpy as np
import pytest

import pullback as pb

O = pb.optimisers
STEPS = 5


# -- numpy references, one per rule (param, grads over the steps) -> params after each step --

def ref_descent(p, gs, lr):
    out = []
    for g in gs:
        p = p - lr * g
        out.append(p)
    return out


def ref_momentum(p, gs, lr, rho, nesterov=False):
    v, out = np.zeros_like(p), []
    for g in gs:
        v = rho * v + g
        p = p - lr * (g + rho * v) if nesterov else p - lr * v
        out.append(p)
    return out


def ref_adam(p, gs, lr, b1, b2, eps, decay=0.0):
    m, v, out = np.zeros_like(p), np.zeros_like(p), []
    for t, g in enumerate(gs, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * (g * g)
        m_hat = m / (1 - b1 ** np.asarray(t, p.dtype))
        v_hat = v / (1 - b2 ** np.asarray(t, p.dtype))
        p = p - lr * (m_hat / (np.sqrt(v_hat) + eps) + decay * p)
        out.append(p)
    return out


CASES = {
    "descent": (O.Descent(0.1), lambda p, gs: ref_descent(p, gs, 0.1)),
    "momentum": (O.Momentum(0.05, rho=0.8), lambda p, gs: ref_momentum(p, gs, 0.05, 0.8)),
    "nesterov": (O.Nesterov(0.05, rho=0.7),
                 lambda p, gs: ref_momentum(p, gs, 0.05, 0.7, nesterov=True)),
    "adam": (O.Adam(0.01, betas=(0.8, 0.99), eps=1e-6),
             lambda p, gs: ref_adam(p, gs, 0.01, 0.8, 0.99, 1e-6)),
    "adamw": (O.AdamW(0.01, betas=(0.85, 0.995), eps=1e-7, decay=0.1),
              lambda p, gs: ref_adam(p, gs, 0.01, 0.85, 0.995, 1e-7, decay=0.1)),
}
DTYPES = [np.float64, np.float32]


def tolerance(dtype):
    return 4 * np.finfo(dtype).eps


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", CASES)
def test_rule_matches_numpy_reference_over_several_steps(name, dtype):
    rule, reference = CASES[name]
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(3, 4)).astype(dtype)
    b0 = rng.normal(size=4).astype(dtype)
    gws = [rng.normal(size=(3, 4)).astype(dtype) for _ in range(STEPS)]
    gbs = [rng.normal(size=4).astype(dtype) for _ in range(STEPS)]
    model = {"w": w0.copy(), "b": b0.copy()}
    state = O.setup(rule, model)
    want_w, want_b = reference(w0, gws), reference(b0, gbs)
    for i in range(STEPS):
        O.update(state, model, {"w": gws[i], "b": gbs[i]})
        assert model["w"].dtype == dtype and model["b"].dtype == dtype
        np.testing.assert_allclose(model["w"], want_w[i], rtol=tolerance(dtype), atol=0)
        np.testing.assert_allclose(model["b"], want_b[i], rtol=tolerance(dtype), atol=0)


@pytest.mark.parametrize("name", CASES)
def test_update_is_in_place(name):
    rule, _ = CASES[name]
    w = np.array([1.0, -2.0, 3.0])
    model = [w]
    state = O.setup(rule, model)
    state_ids = [id(x) for x in _arrays(state[0].state)]
    O.update(state, model, [np.array([0.5, 0.5, -1.0])])
    assert model[0] is w and not np.array_equal(w, [1.0, -2.0, 3.0])
    assert [id(x) for x in _arrays(state[0].state)] == state_ids   # the same objects
    if isinstance(rule, O.Adam | O.AdamW):
        assert state[0].state.t.shape == () and state[0].state.t == 1.0
        np.testing.assert_array_equal(state[0].state.m, (1 - rule.betas[0]) * np.array(
            [0.5, 0.5, -1.0]))


def _arrays(x):
    if x is None:
        return []
    return list(x) if isinstance(x, tuple) else [x]


def test_setup_mirrors_the_model_with_each_rules_state():
    model = {"layers": [np.zeros((2, 3)), np.ones(3, np.float32)], "n": 4, "i": np.arange(3)}
    s = O.setup(O.Descent(0.1), model)
    assert s["n"] is None and s["i"] is None            # constants get no state
    assert s["layers"][0] == O.Leaf(O.Descent(0.1), None)
    v = O.setup(O.Momentum(0.1), model)["layers"][1].state
    assert v.shape == (3,) and v.dtype == np.float32 and not v.any()
    a = O.setup(O.Adam(), model)["layers"][0].state
    assert isinstance(a, O.AdamState) and a.m.shape == a.v.shape == (2, 3)
    assert a.t.shape == () and a.t.dtype == np.float64 and a.t == 0.0


class Layer(NamedTuple):
    w: np.ndarray
    b: np.ndarray


@dataclasses.dataclass
class Net:
    first: Layer
    scale: np.ndarray


def test_pytrees_dict_of_lists_namedtuple_and_dataclass():
    net = Net(Layer(np.ones((2, 2)), np.zeros(2)), np.array(2.0))
    model = {"net": net, "extra": [np.array([1.0, 2.0]), np.array([3.0])]}
    state = O.setup(O.Descent(0.5), model)
    assert isinstance(state["net"], Net) and isinstance(state["net"].first, Layer)
    grads = {"net": Net(Layer(np.full((2, 2), 2.0), np.ones(2)), np.array(4.0)),
             "extra": [np.array([1.0, 1.0]), np.array([-2.0])]}
    O.update(state, model, grads)
    np.testing.assert_array_equal(net.first.w, np.zeros((2, 2)))
    np.testing.assert_array_equal(net.first.b, [-0.5, -0.5])
    assert net.scale == 0.0
    np.testing.assert_array_equal(model["extra"][0], [0.5, 1.5])
    np.testing.assert_array_equal(model["extra"][1], [4.0])


def test_none_gradients_are_skipped():
    model = {"a": np.array([1.0]), "b": [np.array([2.0]), np.array([3.0])]}
    state = O.setup(O.Adam(0.1), model)
    O.update(state, model, {"a": None, "b": [np.array([1.0]), None]})
    O.update(state, model, {"a": np.array([1.0]), "b": None})
    assert state["a"].state.t == 1.0 and state["b"][0].state.t == 1.0
    assert state["b"][1].state.t == 0.0 and model["b"][1] == 3.0
    step = 0.1 / (1.0 + 1e-8)              # first Adam step: m̂ = g, v̂ = g², g = 1
    np.testing.assert_allclose(model["a"], [1.0 - step], rtol=1e-15)
    np.testing.assert_allclose(model["b"][0], [2.0 - step], rtol=1e-15)
    O.update(state, model, None)
    assert state["a"].state.t == 1.0


def test_apply_is_pure_and_equals_update():
    model = {"w": np.array([1.0, 2.0])}
    state = O.setup(O.Nesterov(0.1), model)
    grads = {"w": np.array([0.5, -1.0])}
    new_model, new_state = O.apply(state, model, grads)
    np.testing.assert_array_equal(model["w"], [1.0, 2.0])
    np.testing.assert_array_equal(state["w"].state, [0.0, 0.0])
    O.update(state, model, grads)
    np.testing.assert_array_equal(new_model["w"], model["w"])
    np.testing.assert_array_equal(new_state["w"].state, state["w"].state)


# -- bad input -------------------------------------------------------------------------------

def test_grads_structure_mismatch():
    model = {"w": np.ones(2), "b": [np.ones(2)]}
    state = O.setup(O.Descent(0.1), model)
    with pytest.raises(ValueError, match=r"model\['b'\].*list of 1 entries"):
        O.update(state, model, {"w": np.ones(2), "b": np.ones(2)})
    with pytest.raises(ValueError, match="keys"):
        O.update(state, model, {"w": np.ones(2), "c": [np.ones(2)]})
    with pytest.raises(ValueError, match="do not match the model at model: .*dict"):
        O.update(state, model, [np.ones(2), [np.ones(2)]])
    np.testing.assert_array_equal(model["w"], np.ones(2))


def test_grads_shape_mismatch_changes_nothing():
    model = [np.ones(2), np.ones(3)]
    state = O.setup(O.Momentum(0.1), model)
    with pytest.raises(ValueError, match=r"model\[1\] has shape \(1,\).*shape \(3,\)"):
        O.update(state, model, [np.ones(2), np.ones(1)])
    np.testing.assert_array_equal(model[0], np.ones(2))
    np.testing.assert_array_equal(state[0].state, np.zeros(2))


def test_state_for_another_model():
    state = O.setup(O.Descent(0.1), [np.ones(2)])
    with pytest.raises(ValueError, match="setup"):
        O.update(state, {"w": np.ones(2)}, {"w": np.ones(2)})
    with pytest.raises(ValueError, match="setup"):
        O.update(state, [np.ones(2), np.ones(2)], [np.ones(2), np.ones(2)])


def test_bad_rule_and_hyperparameters():
    with pytest.raises(TypeError, match="optimisation rule"):
        O.setup("adam", [np.ones(2)])
    with pytest.raises(ValueError, match="lr"):
        O.Descent(-1.0)
    with pytest.raises(TypeError, match="lr"):
        O.Adam("fast")
    with pytest.raises(ValueError, match="rho"):
        O.Momentum(0.1, rho=1.5)
    with pytest.raises(TypeError, match="betas"):
        O.Adam(betas=0.9)
    with pytest.raises(ValueError, match="decay"):
        O.AdamW(decay=-0.1)


# -- on each device: a training loop, and the rules traced into compiled code ----------------

def test_training_loop_decreases_the_loss(device):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3
    model = {"w": np.zeros(3), "b": np.zeros(())}

    def loss(m, x, y):
        return pb.mean((x @ m["w"] + m["b"] - y) ** 2)

    state = O.setup(O.Adam(0.05), model)
    start = loss(model, x, y)
    with pb.device(device):
        for _ in range(60):
            (g, _, _) = pb.gradient(loss, model, x, y)
            O.update(state, model, g)
    assert loss(model, x, y) < 0.1 * start


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", CASES)
def test_rule_traces_and_matches_eager(name, dtype, device):
    rule, _ = CASES[name]
    rng = np.random.default_rng(3)
    p = rng.normal(size=(2, 3)).astype(dtype)
    g = rng.normal(size=(2, 3)).astype(dtype)
    state = rule.init(p)
    for _ in range(2):                      # a non-zero state: two eager steps first
        p, state = rule(p, g, state)
    compiled = pb.compile(lambda p, g, s: rule(p, g, s), p, g, state, mode="value",
                          device=device)
    got_p, got_state = compiled(p, g, state)
    want_p, want_state = rule(p, g, state)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got_p, want_p, rtol=rtol)
    for got, want in zip(_arrays(got_state), _arrays(want_state)):
        np.testing.assert_allclose(got, want, rtol=rtol)


def test_apply_traces_over_a_model(device):
    model = {"w": np.array([1.0, 2.0]), "rest": [np.array([[3.0]]), 7]}
    grads = {"w": np.array([0.5, -0.5]), "rest": [np.array([[1.0]]), None]}
    state = O.setup(O.Momentum(0.1), model)
    compiled = pb.compile(O.apply, state, model, grads, mode="value", device=device)
    new_model, new_state = compiled(state, model, grads)
    np.testing.assert_allclose(new_model["w"], [0.95, 2.05], rtol=1e-15)
    np.testing.assert_allclose(new_model["rest"][0], [[2.9]], rtol=1e-15)
    np.testing.assert_allclose(new_state["w"].state, [0.5, -0.5], rtol=1e-15)
    assert new_state["w"].rule == O.Momentum(0.1)


def test_update_of_one_part_of_the_model():
    model = {"layers": [{"w": np.ones(2)}, {"w": np.ones(2)}]}
    state = O.setup(O.Descent(0.5), model)
    O.update(state["layers"][1], model["layers"][1], {"w": np.array([1.0, 2.0])})
    O.update(state["layers"][0]["w"], model["layers"][0]["w"], np.array([2.0, 0.0]))
    np.testing.assert_array_equal(model["layers"][1]["w"], [0.5, 0.0])
    np.testing.assert_array_equal(model["layers"][0]["w"], [0.0, 1.0])
