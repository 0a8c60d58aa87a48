"""`pb.gradient` and `pb.withgradient` called inside a traced function: the derivative is
computed by the enclosing compiled function, checked against numpy and central finite
differences; second derivatives through it; the errors of the traced path."""

from __future__ import annotations

import numpy as np
import pytest
from finite_differences import central_difference

import pullback as pb

RNG = np.random.default_rng(7)
MODEL = {"w1": RNG.normal(size=(3, 4)), "b1": RNG.normal(size=4),
         "w2": RNG.normal(size=(4, 2))}
X = RNG.normal(size=(5, 3))
Y = RNG.normal(size=(5, 2))


def mlp_loss(model, x, y):
    h = pb.tanh(x @ model["w1"] + model["b1"])
    return pb.sum((h @ model["w2"] - y) ** 2) / len(x)


def mlp_loss_np(model, x, y):
    h = np.tanh(x @ model["w1"] + model["b1"])
    return float(np.sum((h @ model["w2"] - y) ** 2) / len(x))


def model_gradient_np(model, x, y):
    """Central differences of the numpy loss, one array per model entry."""
    return {k: central_difference(lambda v, k=k: mlp_loss_np({**model, k: v}, x, y), model[k])
            for k in model}


# -- first order, compiled as one call -----------------------------------------------------


def test_compiled_gradient_equals_untraced_gradient(device):
    step = pb.compile(lambda m, x, y: pb.gradient(mlp_loss, m, x, y), MODEL, X, Y,
                      mode="value", device=device)
    gm, gx, gy = step(MODEL, X, Y)
    expected = model_gradient_np(MODEL, X, Y)
    untraced = pb.gradient(mlp_loss, MODEL, X, Y, device=device)
    assert set(gm) == set(MODEL)
    for k in MODEL:
        np.testing.assert_allclose(gm[k], expected[k], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(gm[k], untraced[0][k], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gx, central_difference(lambda v: mlp_loss_np(MODEL, v, Y), X),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gy, untraced[2], rtol=1e-12, atol=1e-14)


def test_training_step_uses_the_gradient(device):
    def step(m, x, y):
        loss, (g, _, _) = pb.withgradient(mlp_loss, m, x, y)
        return loss, {k: m[k] - 0.1 * g[k] for k in m}

    compiled = pb.compile(step, MODEL, X, Y, mode="value", device=device)
    loss, new = compiled(MODEL, X, Y)
    assert loss == pytest.approx(mlp_loss_np(MODEL, X, Y), rel=1e-12)
    expected = model_gradient_np(MODEL, X, Y)
    for k in MODEL:
        np.testing.assert_allclose(new[k], MODEL[k] - 0.1 * expected[k], rtol=1e-6, atol=1e-8)


def test_withgradient_carries_aux_output(device):
    def f(w, x):
        z = pb.exp(w) * x
        return pb.sum(z), {"z": z, "tag": "run"}

    x = np.array([1.0, 2.0, 3.0])
    w = np.array([0.5, -0.2, 0.1])
    compiled = pb.compile(lambda w, x: pb.withgradient(f, w, x), w, x, mode="value",
                          device=device)
    (total, aux), (gw, gx) = compiled(w, x)
    assert total == pytest.approx(float(np.sum(np.exp(w) * x)), rel=1e-12)
    np.testing.assert_allclose(aux["z"], np.exp(w) * x, rtol=1e-12)
    assert aux["tag"] == "run"
    np.testing.assert_allclose(gw, np.exp(w) * x, rtol=1e-12)
    np.testing.assert_allclose(gx, np.exp(w), rtol=1e-12)


def test_none_entries_ints_and_masks():
    def f(v, label, mask, k, unused):
        assert label == "run"
        return pb.sum(pb.where(mask, v * k, 0.0))

    v = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    mask = np.array([True, False, True])
    k = np.array([2, 3, 4])
    compiled = pb.compile(lambda v, m, k, u: pb.gradient(f, v, "run", m, k, u), v, mask, k,
                          np.ones(2), mode="value")
    gv, glabel, gmask, gk, gu = compiled(v, mask, k, np.ones(2))
    assert gv.dtype == np.float32 and np.array_equal(gv, [2.0, 0.0, 4.0])
    assert gk.dtype == np.float64 and np.array_equal(gk, [1.0, 0.0, 3.0])
    assert glabel is None and gmask is None and gu is None


def test_constant_output_has_no_gradients():
    compiled = pb.compile(lambda x: pb.withgradient(lambda a: (2.5, a * 2), x), np.ones(2),
                          mode="value")
    (value, doubled), grads = compiled(np.array([1.0, 4.0]))
    assert value == 2.5 and np.array_equal(doubled, [2.0, 8.0]) and grads == (None,)


def test_number_arguments_inside_a_trace():
    compiled = pb.compile(lambda x: pb.gradient(lambda a, b: a * b * x, 2, 3.0), 5.0,
                          mode="value")
    assert compiled(5.0) == (15.0, 10.0)


# -- closed-over values ----------------------------------------------------------------------


def test_closed_over_traced_value_is_not_differentiated():
    w = np.array([0.3, 1.2, -0.7])
    x = np.array([1.0, 2.0, 3.0])

    def inner(w, x):
        return pb.gradient(lambda w: pb.sum(w * w * x), w)

    (gw,) = pb.compile(inner, w, x, mode="value")(w, x)
    np.testing.assert_allclose(gw, 2 * w * x, rtol=1e-12)
    # The enclosing derivative sees the closed-over x: d/d(w, x) of sum(2 w x).
    outer = pb.gradient(lambda w, x: pb.sum(inner(w, x)[0]), w, x)
    np.testing.assert_allclose(outer[0], 2 * x, rtol=1e-12)
    np.testing.assert_allclose(outer[1], 2 * w, rtol=1e-12)


# -- second order ----------------------------------------------------------------------------


def f_sin(w):
    return pb.sum(pb.sin(w) * w ** 2)


def grad_f_sin_np(w):
    return np.cos(w) * w ** 2 + 2 * w * np.sin(w)


def test_gradient_of_gradient_norm(device):
    w = np.array([0.3, 1.2, -0.7, 2.1])
    with pb.device(device):
        (g,) = pb.gradient(lambda w: pb.sum(pb.gradient(f_sin, w)[0] ** 2), w)
    expected = central_difference(lambda v: float(np.sum(grad_f_sin_np(v) ** 2)), w)
    np.testing.assert_allclose(g, expected, rtol=1e-6, atol=1e-8)


def test_jacobian_of_gradient_is_hessian(device):
    w = np.array([0.3, 1.2, -0.7])
    with pb.device(device):
        (jac,) = pb.jacobian(lambda w: pb.gradient(f_sin, w)[0], w)
        hess = pb.hessian(f_sin, w)
    np.testing.assert_allclose(jac, hess, rtol=1e-12, atol=1e-14)
    second = np.array([central_difference(lambda v, i=i: grad_f_sin_np(v)[i], w)
                       for i in range(3)])
    np.testing.assert_allclose(jac, second, rtol=1e-6, atol=1e-8)


def test_third_order_through_two_traced_gradients():
    w = np.array([0.5, -1.0, 2.0])

    def second(v):
        return pb.gradient(lambda u: pb.sum(pb.gradient(lambda t: pb.sum(t ** 4), u)[0]), v)[0]

    (g,) = pb.gradient(lambda v: pb.sum(second(v)), w)
    np.testing.assert_allclose(g, 24 * w, rtol=1e-12)


# -- regions inside regions ------------------------------------------------------------------


def test_gradient_inside_checkpointed():
    w = np.array([0.3, 1.2, -0.7])

    def f(w):
        return pb.sum(pb.checkpointed(lambda v: pb.gradient(lambda u: pb.sum(pb.sin(u)), v)[0],
                                      w))

    (g,) = pb.gradient(f, w)
    np.testing.assert_allclose(g, -np.sin(w), rtol=1e-12)


def test_checkpointed_inside_a_traced_gradient():
    w = np.array([0.3, 1.2, -0.7])
    loss = lambda v: pb.sum(pb.checkpointed(lambda u: pb.tanh(u) ** 2, v))  # noqa: E731
    (gw,) = pb.compile(lambda w: pb.gradient(loss, w), w, mode="value")(w)
    np.testing.assert_allclose(gw, 2 * np.tanh(w) / np.cosh(w) ** 2, rtol=1e-12)


def test_forwarddiff_first_order_works_second_order_raises():
    w = np.array([1.0, 2.0, 3.0])

    def inner(v):
        return pb.gradient(lambda u: pb.sum(pb.forwarddiff(lambda a: a ** 3, u)), v)[0]

    np.testing.assert_allclose(pb.compile(inner, w, mode="value")(w), 3 * w ** 2, rtol=1e-12)
    with pytest.raises(NotImplementedError, match="second derivatives through pb.forwarddiff"):
        pb.gradient(lambda v: pb.sum(inner(v)), w)
    with pytest.raises(NotImplementedError, match="second derivatives through pb.forwarddiff"):
        pb.gradient(lambda v: pb.sum(pb.gradient(lambda u: pb.sum(inner(u)), v)[0]), w)


# -- bad input -------------------------------------------------------------------------------


def test_params_inside_a_trace_is_rejected():
    p = pb.array(np.ones(3))
    with pytest.raises(NotImplementedError, match="pass the parameters as explicit arguments"):
        pb.compile(lambda x: pb.gradient(lambda: pb.sum(p * x), pb.Params([p])), np.ones(3),
                   mode="value")


def test_non_scalar_output_has_the_same_message_inside_a_trace():
    f = lambda v: v * 2  # noqa: E731
    with pytest.raises(TypeError) as outside:
        pb.gradient(f, np.ones(3))
    with pytest.raises(TypeError) as inside:
        pb.compile(lambda x: pb.gradient(f, x), np.ones(3), mode="value")
    assert "needs the function to return a real scalar" in str(outside.value)
    assert str(inside.value) == str(outside.value)


def test_nested_container_first_output_has_the_same_message_inside_a_trace():
    f = lambda v: ((pb.sum(v), v), 1)  # noqa: E731
    with pytest.raises(TypeError) as outside:
        pb.withgradient(f, np.ones(3))
    with pytest.raises(TypeError) as inside:
        pb.compile(lambda x: pb.withgradient(f, x), np.ones(3), mode="value")
    assert str(inside.value) == str(outside.value)


def test_pullback_inside_a_trace_is_rejected():
    with pytest.raises(NotImplementedError, match="use pb.gradient or pb.withgradient"):
        pb.compile(lambda x: pb.pullback(lambda v: v, x)[0], np.ones(3), mode="value")


def test_tracer_of_an_earlier_trace_is_rejected():
    kept = []
    pb.compile(lambda x: kept.append(x) or pb.sum(x), np.ones(2), mode="value")
    with pytest.raises(ValueError, match="another trace"):
        pb.compile(lambda x: pb.gradient(lambda a, b: pb.sum(a * b), x, kept[0]), np.ones(2),
                   mode="value")
