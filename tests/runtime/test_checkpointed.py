"""`pb.checkpointed`: the same values and derivatives as without it, on every device,
for MLP blocks, nested and repeated regions, several outputs, second order and
batched derivatives; the backward pass recomputes instead of keeping."""

from __future__ import annotations

import numpy as np
import pytest

import pullback as pb


@pytest.fixture(autouse=True)
def on_each_device(device):
    """Every test here runs on each device."""
    with pb.device(device):
        yield


def _exact(device: str):
    """Bit-for-bit on the CPU (same op order); 1e-12 relative elsewhere."""
    if device == "cpu":
        return np.testing.assert_array_equal
    return lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def _dense(layer: dict, h):
    return pb.tanh(h @ layer["W"] + layer["b"])


def _model(rng: np.random.Generator, width: int, depth: int) -> dict:
    return {"layers": [{"W": rng.standard_normal((width, width)) / np.sqrt(width),
                        "b": rng.standard_normal(width)} for _ in range(depth)]}


def _loss(model: dict, x, y, ck: bool):
    h = x
    for layer in model["layers"]:
        h = pb.checkpointed(_dense, layer, h) if ck else _dense(layer, h)
    return pb.mean((h - y) ** 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mlp_gradient_matches(device, seed):
    rng = np.random.default_rng(seed)
    width, depth, batch = int(rng.integers(2, 6)), int(rng.integers(1, 4)), 3
    model = _model(rng, width, depth)
    x, y = rng.standard_normal((batch, width)), rng.standard_normal((batch, width))
    got = pb.gradient(lambda m, x: _loss(m, x, y, True), model, x)
    want = pb.gradient(lambda m, x: _loss(m, x, y, False), model, x)
    same = _exact(device)
    for g, w in zip(got[0]["layers"], want[0]["layers"], strict=True):
        same(g["W"], w["W"])
        same(g["b"], w["b"])
    same(got[1], want[1])


def _two_blocks(h, W):
    return pb.checkpointed(lambda z: pb.sin(z @ W), pb.tanh(h @ W))


def test_nested_and_repeated(device):
    rng = np.random.default_rng(3)
    W = rng.standard_normal((4, 4)) / 2
    x = rng.standard_normal((2, 4))

    def f(x, ck):
        inner = (lambda h: pb.checkpointed(_two_blocks, h, W)) if ck else \
            (lambda h: pb.sin(pb.tanh(h @ W) @ W))
        h = inner(inner(x))  # the same region used twice
        h = pb.checkpointed(lambda a, b: a * b, h, h) if ck else h * h
        return pb.sum(h)

    _exact(device)(pb.gradient(lambda x: f(x, True), x), pb.gradient(lambda x: f(x, False), x))


def test_value_and_several_outputs(device):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(5)

    def f(x):
        a, (b, c) = pb.checkpointed(lambda v: (pb.sin(v), (pb.cos(v), 2.0)), x)
        return pb.sum(a * b) * c

    value, (grad,) = pb.withgradient(f, x)
    np.testing.assert_allclose(value, 2 * np.sum(np.sin(x) * np.cos(x)), rtol=1e-14)
    np.testing.assert_allclose(grad, 2 * np.cos(2 * x), rtol=1e-13)


def test_closed_over_arrays_and_identity(device):
    rng = np.random.default_rng(5)
    w = rng.standard_normal(3)
    x = rng.standard_normal(3)
    (g,) = pb.gradient(lambda x: pb.sum(pb.checkpointed(lambda v: v, x)
                                     * pb.checkpointed(lambda v: pb.exp(v * w), x)), x)
    np.testing.assert_allclose(g, np.exp(x * w) * (1 + x * w), rtol=1e-13)


def test_outside_a_trace_is_a_plain_call():
    x = np.array([0.5, -1.0])
    np.testing.assert_array_equal(pb.checkpointed(np.tanh, x), np.tanh(x))


@pytest.mark.parametrize("hessian", [pb.hessian, pb.hessian_reverse],
                         ids=["forward-over-reverse", "reverse-over-reverse"])
def test_hessian_through_a_checkpoint(device, hessian):
    rng = np.random.default_rng(6)
    W = rng.standard_normal((3, 3))
    x = rng.standard_normal(3)

    def f(x, ck):
        h = pb.checkpointed(lambda v: pb.tanh(W @ v), x) if ck else pb.tanh(W @ x)
        return pb.sum(pb.sin(h))

    got, plain = hessian(lambda x: f(x, True), x), hessian(lambda x: f(x, False), x)
    np.testing.assert_allclose(got, plain, rtol=1e-12, atol=1e-14)
    t = np.tanh(W @ x)
    d2 = -np.sin(t) * (1 - t**2) ** 2 + np.cos(t) * (-2 * t) * (1 - t**2)
    np.testing.assert_allclose(got, W.T @ np.diag(d2) @ W, rtol=1e-12, atol=1e-14)


def test_jacobian_through_a_checkpoint(device):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(4)
    (J,) = pb.jacobian(lambda x: pb.checkpointed(lambda v: pb.sin(v) * v[0], x), x)
    want = np.diag(np.cos(x) * x[0])
    want[:, 0] += np.sin(x)
    np.testing.assert_allclose(J, want, rtol=1e-13, atol=1e-15)


def test_python_side_effects_do_not_crash(device):
    calls = []

    def f(v):
        calls.append(1)
        return pb.sin(v)

    x = np.array([0.1, 0.2])
    (g,) = pb.gradient(lambda x: pb.sum(pb.checkpointed(f, x)), x)
    np.testing.assert_allclose(g, np.cos(x), rtol=1e-14)
    assert calls


def _six_layers(ck: bool):
    rng = np.random.default_rng(8)
    Ws = [rng.standard_normal((16, 16)) / 4 for _ in range(6)]
    x = rng.standard_normal((8, 16))

    def f(x):
        h = x
        for W in Ws:
            layer = lambda h, W=W: pb.tanh(pb.tanh(h @ W) * 1.5)  # noqa: E731
            h = pb.checkpointed(layer, h) if ck else layer(h)
        return pb.sum(h * h)

    return pb.compile(f, x, mode="gradient"), x


def test_backward_pass_recomputes():
    """Six checkpointed layers: `tanh` appears twice as often in the lowered program
    (forward and recomputation); the gradient is unchanged."""
    (with_ck, x), (without, _) = _six_layers(True), _six_layers(False)
    np.testing.assert_allclose(with_ck(x), without(x), rtol=1e-12, atol=1e-14)
    lowered = with_ck.ir("convert-kernels-to-loops")
    assert lowered.count("math.tanh") == 2 * without.ir("convert-kernels-to-loops").count(
        "math.tanh") == 24


def test_backward_pass_needs_less_memory():
    """The memory plan of the gradient needs fewer bytes for temporaries and at its peak,
    because fewer activations are kept for the backward pass."""
    (with_ck, _), (without, _) = _six_layers(True), _six_layers(False)
    assert with_ck.memory.temporaries < without.memory.temporaries
    assert with_ck.memory.residuals < without.memory.residuals
    assert with_ck.memory.peak_bytes < without.memory.peak_bytes


def test_showgrad_and_hooks_inside_a_region(device, capsys):
    x = np.array([0.5, 1.0])
    (g,) = pb.gradient(lambda x: pb.sum(pb.checkpointed(
        lambda v: pb.hook(lambda d: d * 10, pb.showgrad(v)), x)), x)
    np.testing.assert_array_equal(g, [10.0, 10.0])
    assert "∂" in capsys.readouterr().out


def test_bad_function_is_refused():
    with pytest.raises(TypeError, match="needs a function"):
        pb.checkpointed(3, np.zeros(2))


def test_programs_that_differ_in_the_region_result_compile_apart(device):
    """The same ops recorded, a different one returned: two programs, not one."""
    x = np.array([0.3, -0.4])

    def gradient_of(k: int) -> np.ndarray:
        (g,) = pb.gradient(
            lambda x: pb.sum(pb.checkpointed(lambda v: [pb.sin(v), pb.cos(v)][k], x)), x)
        return g

    grads = [gradient_of(0), gradient_of(1)]
    np.testing.assert_allclose(grads[0], np.cos(x), rtol=1e-14)
    np.testing.assert_allclose(grads[1], -np.sin(x), rtol=1e-14)


def test_checkpointed_inside_forwarddiff(device):
    def region(v):
        return pb.checkpointed(lambda u: pb.tanh(u) * u, v)

    def f(x):
        return pb.sum(pb.forwarddiff(region, x, chunk_threshold=2))

    x = np.array([0.3, -0.7, 1.1])
    (g,) = pb.gradient(f, x, device=device)
    np.testing.assert_allclose(g, np.tanh(x) + x * (1 - np.tanh(x) ** 2), rtol=1e-12)
