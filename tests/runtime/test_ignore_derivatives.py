"""`pb.ignore_derivatives`: both forms block derivatives exactly where they are used,
checked against central finite differences of the function with the blocked value held
fixed; outside a trace they are plain Python."""

import numpy as np
import pytest
from finite_differences import central_difference

import pullback as pb

X = np.array([0.3, -0.8, 1.2])


@pytest.fixture(autouse=True)
def on_each_device(device):
    """Every test here runs on each device."""
    with pb.device(device):
        yield




def test_outside_a_trace_both_forms_are_plain():
    assert pb.ignore_derivatives(X) is X
    assert pb.ignore_derivatives(2.5) == 2.5
    assert pb.ignore_derivatives(lambda: 7) == 7
    pair = pb.ignore_derivatives((X, 1.0))
    assert pair[0] is X and pair[1] == 1.0


def test_value_form_inside_a_larger_expression():
    # f(x) = sum(tanh(x) * c) + sum(x**2), with c = exp(x) held constant
    def f(x):
        return pb.sum(pb.tanh(x) * pb.ignore_derivatives(pb.exp(x))) + pb.sum(x ** 2)

    c = np.exp(X)
    held = lambda x: np.sum(np.tanh(x) * c) + np.sum(x ** 2)  # noqa: E731
    y, (g,) = pb.withgradient(f, X)
    assert y == pytest.approx(held(X), rel=1e-12)
    np.testing.assert_allclose(g, central_difference(held, X), rtol=1e-6)


def test_function_form_blocks_every_returned_value():
    # statistics of x computed under ignore_derivatives act as constants (a normalisation)
    def f(x):
        mean, scale = pb.ignore_derivatives(lambda: (pb.mean(x), pb.sqrt(pb.sum(x * x))))
        return pb.sum(((x - mean) / scale) ** 3)

    mean, scale = X.mean(), np.sqrt(np.sum(X * X))
    held = lambda x: np.sum(((x - mean) / scale) ** 3)  # noqa: E731
    g = pb.gradient(f, X)[0]
    np.testing.assert_allclose(g, central_difference(held, X), rtol=1e-6)


def test_fully_stopped_argument_has_no_derivative():
    g = pb.gradient(lambda x, y: pb.sum(pb.ignore_derivatives(x) * y), X, 2.0)
    assert g[0] is None
    assert g[1] == pytest.approx(X.sum())


def test_pullback_through_stopped_value():
    y, back = pb.pullback(lambda x: x * pb.ignore_derivatives(x), X)
    np.testing.assert_allclose(y, X * X)
    dy = np.array([1.0, 2.0, -1.0])
    np.testing.assert_allclose(back(dy)[0], dy * X)


def test_implicit_parameter_can_be_ignored():
    w = pb.array([0.5, -2.0])
    ps = pb.Params([w])
    gs = pb.gradient(lambda: pb.sum(w * pb.ignore_derivatives(w)), ps)
    np.testing.assert_allclose(gs[w], [0.5, -2.0])


def test_ir_holds_stop_gradient_and_lowered_code_does_not():
    compiled = pb.compile(lambda x: pb.sum(x * pb.ignore_derivatives(x)), X)
    assert "ad.stop_gradient" in compiled.ir("trace")
    stages = list(compiled.stages)
    lowered = [compiled.ir(s) for s in stages[stages.index("drop-identities"):]]
    assert lowered and all("ad.stop_gradient" not in text for text in lowered)
    np.testing.assert_allclose(compiled(X)[0], X)
