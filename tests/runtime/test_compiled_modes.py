"""`pb.compile` in the Jacobian and Hessian modes: calls give what the uncompiled
functions give, for new arguments of the same signature, without re-tracing."""

import numpy as np
import pytest

import pullback as pb


@pytest.fixture(autouse=True)
def on_each_device(device):
    """Every test here runs on each device."""
    with pb.device(device):
        yield


def layer(x, w):
    return pb.tanh(w @ x) * 2.0


def test_jacobian_mode_matches_jacobian():
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((5, 3)), rng.standard_normal(3)
    c = pb.compile(layer, x, w, mode="jacobian")
    for _ in range(2):
        x, w = rng.standard_normal(3), rng.standard_normal((5, 3))
        got, want = c(x, w), pb.jacobian(layer, x, w)
        for g, e in zip(got, want, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-14)
    t = 1 - np.tanh(w @ x) ** 2
    np.testing.assert_allclose(got[0], 2 * t[:, None] * w, rtol=1e-12)


def test_withjacobian_mode_with_fixed_integer_and_string():
    a = np.array([[1, 2], [3, 4], [5, 6]])
    c = pb.compile(lambda a, d: pb.prod(a, axis=d), a, 1, mode="withjacobian")
    assert repr(c(a, 1)) == repr(pb.withjacobian(lambda a, d: pb.prod(a, axis=d), a, 1))
    with pytest.raises(TypeError, match="fixed"):
        c(a, 0)
    s = pb.compile(lambda a, s: a ** len(s), np.array([1, 2, 3]), "str", mode="jacobian")
    j, none = s(np.array([2, 1, 1]), "str")
    np.testing.assert_array_equal(j, np.diag([12.0, 3.0, 3.0]))
    assert none is None


def test_implicit_jacobian_mode():
    xs = pb.array([[1, 2], [3, 4]])
    ys = pb.array([5, 7, 9])
    ps = pb.Params([xs, ys])
    c = pb.compile(lambda: ys[0:2] + pb.sum(xs ** 2), ps, mode="jacobian")
    np.testing.assert_array_equal(c(ps)[xs], [[2.0, 4.0, 6.0, 8.0]] * 2)
    xs[0, 0] = 5
    np.testing.assert_array_equal(c(ps)[xs], [[10.0, 4.0, 6.0, 8.0]] * 2)
    with pytest.raises(TypeError, match="same Params"):
        c(pb.Params([xs, ys]))


@pytest.mark.parametrize("mode", ["hessian", "hessian_reverse"])
def test_hessian_modes(mode):
    f = lambda xy: pb.arctan2(xy[0], xy[1])  # noqa: E731
    c = pb.compile(f, np.array([1.0, 2.0]), mode=mode)
    np.testing.assert_allclose(c(np.array([1.0, 2.0])), [[-0.16, -0.12], [-0.12, 0.16]], rtol=1e-14)
    x = np.array([0.5, -3.0])
    np.testing.assert_allclose(c(x), getattr(pb, mode)(f, x), rtol=1e-14)
    s = pb.compile(pb.sin, 1.0, mode=mode)
    assert s(np.pi / 2) == -1.0


def test_diaghessian_mode():
    f = lambda x, y: pb.sum(x * y[:, None] * y[None, :])  # noqa: E731
    x, y = np.array([[1, 22], [333, 4]]), np.array([0.5, 0.666])
    c = pb.compile(f, x, y, mode="diaghessian")
    hx, hy = c(x, y)
    np.testing.assert_array_equal(hx, np.zeros((2, 2)))
    np.testing.assert_allclose(hy, [2.0, 8.0], rtol=1e-14)
    y2 = np.array([1.5, -2.0])
    for got, want in zip(c(x, y2), pb.diaghessian(f, x, y2), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-14)
    assert pb.compile(pb.arctan2, 1, 2, mode="diaghessian")(1, 2) == pytest.approx((-0.16, 0.16))


def test_compiled_modes_do_not_retrace_and_show_ir():
    calls = []

    def f(x):
        calls.append(1)
        return pb.sum(x ** 3)

    c = pb.compile(f, np.ones(3), mode="hessian")
    c(np.ones(3))
    c(np.arange(3.0))
    assert len(calls) == 1
    assert "array.mul" in c.ir("trace") and "autodiff" in c.stages


def test_signature_and_mode_errors():
    c = pb.compile(lambda x: x * 2, np.ones(3), mode="jacobian")
    with pytest.raises(TypeError, match="signature"):
        c(np.ones(4))
    with pytest.raises(ValueError, match="diaghessian"):
        pb.compile(lambda x: x, 1.0, mode="hessians")
    with pytest.raises(TypeError, match="one argument"):
        pb.compile(lambda x, y: x * y, 1.0, 2.0, mode="hessian")
