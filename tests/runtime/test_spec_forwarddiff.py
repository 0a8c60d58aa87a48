"""The "forwarddiff" examples of spec/API.md with their exact numbers, and forward-mode
regions against central finite differences for several chunk sizes."""

from __future__ import annotations

import numpy as np
import pytest
from finite_differences import central_difference as central_differences

import pullback as pb


@pytest.fixture(autouse=True)
def on_each_device(device):
    """Every test here runs on each device."""
    with pb.device(device):
        yield


def power(x, n):
    r = 1.0
    for _ in range(n):
        r = r * x
    return r


# -- the spec's examples ---------------------------------------------------------------


def test_power_region():
    assert pb.gradient(lambda x: pb.forwarddiff(lambda x: power(x, 2), x), 5) == (10.0,)


def test_closed_over_value_gets_no_gradient():
    assert pb.gradient(lambda a, b: pb.forwarddiff(lambda a: a * b, a), 2, 3) == (3.0, None)


def test_values_passed_in_x_get_gradients():
    g = pb.gradient(lambda a, b: pb.forwarddiff(lambda v: v[0] * v[1], pb.stack([a, b])), 2, 3)
    assert g == (3.0, 2.0)


# -- against finite differences ----------------------------------------------------------


def region(v):
    """A region with a matrix input and output, mixing elements across rows."""
    return pb.sin(v) * pb.sum(v ** 2, axis=0) + pb.exp(v[::-1] / 4)


def region_np(v):
    return np.sin(v) * np.sum(v ** 2, axis=0) + np.exp(v[::-1] / 4)


def loss(chunk):
    return lambda x, w: pb.sum(pb.tanh(pb.forwarddiff(region, x, chunk)) * w)


def loss_np(x, w):
    return float(np.sum(np.tanh(region_np(x)) * w))




@pytest.mark.parametrize("chunk", [1, 4, 5, 12, 100])
def test_chunk_sizes_match_finite_differences(chunk):
    """x has 12 elements: chunks of 1, a divisor, a non-divisor, all, more than all."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    gx, gw = pb.gradient(loss(chunk), x, w)
    want = central_differences(lambda v: loss_np(v, w), x)
    np.testing.assert_allclose(gx, want, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gw, np.tanh(region_np(x)), rtol=1e-12)


def test_chunk_sizes_agree():
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    grads = [pb.gradient(loss(chunk), x, w)[0] for chunk in (1, 4, 5, 12, 100)]
    for g in grads[1:]:
        np.testing.assert_allclose(g, grads[0], rtol=1e-13, atol=1e-15)


def test_value_is_the_region_value():
    x = np.array([[0.5, -1.0], [2.0, 0.25]])
    val, _ = pb.withgradient(lambda x: pb.sum(pb.forwarddiff(region, x, 3)), x)
    assert val == pytest.approx(float(np.sum(region_np(x))), rel=1e-14)


def test_jacobian_through_region():
    x = np.array([1.0, 2.0, 3.0])
    (j,) = pb.jacobian(lambda x: pb.forwarddiff(lambda v: pb.cumsum(v * v), x, 2), x)
    np.testing.assert_array_equal(j, [[2, 0, 0], [2, 4, 0], [2, 4, 6]])


def test_scalar_input_vector_output():
    g = pb.gradient(lambda t: pb.sum(pb.forwarddiff(lambda s: s * np.arange(1.0, 4.0), t)), 2.0)
    assert g == (6.0,)


def test_nested_regions():
    def f(x):
        return pb.sum(pb.forwarddiff(lambda v: pb.forwarddiff(lambda u: u ** 3, v, 2) * 2, x, 3))

    (g,) = pb.gradient(f, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(g, 6 * np.array([1.0, 2.0, 3.0]) ** 2, rtol=1e-14)


def test_captured_mask_and_arrays():
    """The region reads a traced mask and a traced array of the enclosing function."""
    def f(x, b):
        mask = b > 0
        return pb.sum(pb.forwarddiff(lambda v: pb.where(mask, v * b, v ** 2), x, 2))

    x, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, -1.0, 5.0])
    gx, gb = pb.gradient(f, x, b)
    np.testing.assert_array_equal(gx, [2.0, 4.0, 5.0])
    assert gb is None


def test_compiled_jacobian_through_region():
    f = lambda x: pb.forwarddiff(lambda v: v[::-1] * v, x, 2)  # noqa: E731
    c = pb.compile(f, np.ones(3), mode="jacobian")
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(c(x)[0], [[3, 0, 1], [0, 4, 0], [3, 0, 1]])
    np.testing.assert_array_equal(pb.compile(f, x, mode="value")(x), [3.0, 4.0, 3.0])


def test_float32():
    (g,) = pb.gradient(lambda x: pb.sum(pb.forwarddiff(lambda v: v ** 2, x)),
                       np.array([1.0, 2.0], np.float32))
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, [2.0, 4.0])


# -- closures, outside a trace, errors ---------------------------------------------------


def test_closed_over_arrays_and_params_get_no_gradient():
    w = pb.array([1.0, 2.0])
    c = np.array([3.0, 4.0])
    gs = pb.gradient(lambda: pb.sum(pb.forwarddiff(lambda v: v * w * c, 2.0)), pb.Params([w]))
    assert gs[w] is None
    gs = pb.gradient(lambda: pb.sum(pb.forwarddiff(lambda v: v * v * c, w)), pb.Params([w]))
    np.testing.assert_array_equal(gs[w], [6.0, 16.0])


def test_outside_differentiation_is_plain_call():
    out = pb.forwarddiff(lambda v: v * 2, np.array([1.0, 2.0]))
    np.testing.assert_array_equal(out, [2.0, 4.0])
    assert pb.forwarddiff(lambda v: v + 1, 2.0) == 3.0


@pytest.mark.parametrize("chunk", [0, -1, 1.5, True])
def test_bad_chunk_threshold(chunk):
    with pytest.raises(ValueError, match="chunk_threshold"):
        pb.gradient(lambda x: pb.forwarddiff(lambda v: v * v, x, chunk), 1.0)


def test_several_inputs_need_one_array():
    with pytest.raises(TypeError, match="pb.stack"):
        pb.gradient(lambda a, b: pb.forwarddiff(lambda t: t[0] * t[1], (a, b)), 1.0, 2.0)
    with pytest.raises(TypeError, match="one array or number"):
        pb.gradient(lambda a: pb.sum(pb.forwarddiff(lambda t: (t, t), a)[0]), 1.0)


def test_hessian_through_region_raises():
    with pytest.raises(NotImplementedError, match="second derivatives through pb.forwarddiff"):
        pb.hessian(lambda x: pb.sum(pb.forwarddiff(lambda v: v ** 3, x)), np.ones(2))


@pytest.mark.parametrize("marker", [
    lambda v: pb.showgrad(v), lambda v: pb.hook(lambda g: g, v)], ids=["showgrad", "hook"])
def test_showgrad_or_hook_inside_region_raises(marker):
    with pytest.raises(NotImplementedError, match="showgrad/hook inside forwarddiff"):
        pb.gradient(lambda x: pb.forwarddiff(lambda v: marker(v) * 2, x), 1.0)


def test_trace_inline_binds_arguments():
    """`Trace.inline`, which splices the region's derivative back: a traced function's
    body emitted again with its arguments bound to other values."""
    from pullback.dsl.trace import Trace, tracing

    inner = Trace()
    f64 = np.dtype(np.float64)
    a, b = inner.new_input((2,), f64), inner.new_input((2,), f64)
    with tracing(inner):
        out = a * b + 1.0
    fn = next(iter(inner.finish([out.value], "g").ops))

    def f(x):
        (y,) = x.trace.inline(fn, [x.value, (x * 2).value])
        return pb.sum(pb.Tracer(x.trace, y))

    x = np.array([1.0, 3.0])
    val, (g,) = pb.withgradient(f, x)
    assert val == float(np.sum(2 * x * x + 1))
    np.testing.assert_array_equal(g, 4 * x)


def test_value_needs_no_jacobian_and_stays_finite():
    c = pb.compile(lambda x: pb.forwarddiff(lambda v: v * 3.0, x), np.ones(3), mode="value")
    assert "array.matmul" not in c.ir("simplify")
    val, (g,) = pb.withgradient(lambda x: pb.sum(pb.forwarddiff(pb.sqrt, x)), np.array([0.0, 4.0]))
    assert val == 2.0
    assert g[0] == np.inf
