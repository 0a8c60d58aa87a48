"""The examples of spec/API.md "showgrad and hook" with their exact numbers and printed
lines, and the behaviour around them: default names, several uses, collecting hooks,
compiled hooks, errors from hooks, and the compile cache binding each call's hooks."""

import numpy as np
import pytest

import pullback as pb


@pytest.fixture(autouse=True)
def on_each_device(device):
    """Every test here runs on each device."""
    with pb.device(device):
        yield


def _lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_showgrad_of_one_factor(capsys):
    assert pb.gradient(lambda a, b: pb.showgrad(a) * b, 2, 3) == (3.0, 2.0)
    assert _lines(capsys) == ["∂(a) = 3.0"]


def test_showgrad_shows_the_gradient_of_that_use(capsys):
    assert pb.gradient(lambda a: pb.showgrad(a) * a, 2) == (4.0,)
    assert _lines(capsys) == ["∂(a) = 2.0"]


def test_showgrad_of_an_unused_value_says_none(capsys):
    def f(a, b):
        pb.showgrad(a)        # not used, so no gradient
        return a * b

    assert pb.gradient(f, 2, 3) == (3.0, 2.0)
    assert _lines(capsys) == ["∂(a) = None"]


def test_hook_that_prints(capsys):
    g = pb.gradient(lambda a, b: pb.hook(lambda g: print("ā =", g) or g, a) * b, 2, 3)
    assert g == (3.0, 2.0)
    assert _lines(capsys) == ["ā = 3.0"]


def test_hook_that_negates(capsys):
    assert pb.gradient(lambda a, b: pb.hook(lambda g: -g, a) * b, 2, 3) == (-3.0, 2.0)
    assert _lines(capsys) == []


def test_outside_differentiation_nothing_happens(capsys):
    x = np.array([1.0, 2.0])
    assert pb.showgrad(x) is x
    assert pb.hook(lambda g: g * 0, x) is x
    assert _lines(capsys) == []


def test_value_only_compilation_prints_nothing(capsys):
    f = pb.compile(lambda x: pb.sum(pb.showgrad(x) ** 2), np.array([1.0, 2.0]), mode="value")
    assert f(np.array([3.0, 4.0])) == 25.0
    assert _lines(capsys) == []


def test_default_name_is_the_argument_source(capsys):
    x = np.array([1.0, 2.0])
    pb.gradient(lambda w: pb.sum(pb.showgrad(w * 3) + len(str(1)) * pb.showgrad(w)), x)
    assert _lines(capsys) == ["∂(w) = array([1., 1.])", "∂(w * 3) = array([1., 1.])"]


def test_explicit_name_and_source_fallback(capsys):
    pb.gradient(lambda a: pb.showgrad(a, name="alpha") * 5, 1.0)
    namespace = {"pb": pb}
    exec("f = lambda a: pb.showgrad(a) * 7", namespace)
    pb.gradient(namespace["f"], 1.0)
    assert _lines(capsys) == ["∂(alpha) = 5.0", "∂(x) = 7.0"]


def test_several_uses_each_show_their_own_gradient(capsys):
    def f(a):
        return pb.showgrad(a, name="first") * 2 + pb.showgrad(a, name="second") * 3 + a

    assert pb.gradient(f, 1.0) == (6.0,)
    assert sorted(_lines(capsys)) == ["∂(first) = 2.0", "∂(second) = 3.0"]


def test_array_gradients_and_order_of_the_backward_pass(capsys):
    x = np.array([1.0, 2.0, 3.0])

    def f(x):
        y = pb.showgrad(x * x, name="y")
        return pb.sum(pb.showgrad(pb.sin(y), name="s") * 2)

    (g,) = pb.gradient(f, x)
    np.testing.assert_allclose(g, 2 * np.cos(x * x) * 2 * x)
    lines = _lines(capsys)
    assert lines[0] == "∂(s) = array([2., 2., 2.])"
    assert lines[1] == "∂(y) = " + repr(2 * np.cos(x * x))


def test_hook_collects_values_of_each_call():
    seen = []
    for b in (3.0, 5.0):
        pb.gradient(lambda a, b: pb.hook(lambda g: seen.append(np.copy(g)) or g, a) * b, 2.0, b)
    assert [float(s) for s in seen] == [3.0, 5.0]


def test_hook_on_arrays_scales_the_gradient():
    x = np.array([1.0, -2.0, 0.5])
    (g,) = pb.gradient(lambda x: pb.sum(pb.hook(lambda g: g * np.arange(3.0), x) ** 2), x)
    np.testing.assert_allclose(g, 2 * x * np.arange(3.0))


def test_hook_in_float32_keeps_the_dtype():
    x = np.array([1.0, 2.0], np.float32)
    (g,) = pb.gradient(lambda x: pb.sum(pb.hook(lambda g: g * 2, x) ** 2), x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 4 * x)


@pytest.mark.parametrize("hook, reference", [
    (lambda g: -g, lambda g: -g),
    (lambda g: g * g + 1.0, lambda g: g * g + 1.0),
    (pb.sin, np.sin),
], ids=["negate", "square", "sin"])
def test_compiled_hook_gives_identical_results(hook, reference):
    x = np.array([0.3, -1.2, 2.0])

    def f(compiled):
        return lambda x: pb.sum(pb.exp(pb.hook(hook, x * 2, compiled=compiled)) * x)

    (host,) = pb.gradient(f(False), x)
    (traced,) = pb.gradient(f(True), x)
    np.testing.assert_array_equal(host, traced)
    # d/dx of sum(exp(u) * x) with u = 2x: the hook maps u's gradient exp(u) * x
    np.testing.assert_allclose(host, 2 * reference(np.exp(2 * x) * x) + np.exp(2 * x))


def test_hook_with_the_wrong_shape_names_the_hook():
    def widen(g):
        return np.zeros(3)

    with pytest.raises(ValueError, match=r"hook widen .*shape \(3,\).*expected shape \(\)"):
        pb.gradient(lambda a: pb.hook(widen, a) * 2, 1.0)


def test_hook_with_the_wrong_dtype_names_the_hook():
    def to_int(g):
        return np.ones(2, np.int64)

    with pytest.raises(ValueError, match=r"hook to_int .*dtype int64.*float64"):
        pb.gradient(lambda a: pb.sum(pb.hook(to_int, a)), np.ones(2))


def test_exception_inside_a_hook_propagates():
    class Stop(Exception):
        pass

    def fail(g):
        raise Stop("from the hook")

    with pytest.raises(Stop, match="from the hook"):
        pb.gradient(lambda a: pb.hook(fail, a) * 2, 1.0)
    assert pb.gradient(lambda a: pb.hook(lambda g: g, a) * 2, 1.0) == (2.0,)


def test_cached_code_calls_the_current_hook():
    before = pb.cache_info().compiles
    results = []
    for k in (1.0, 2.0, 3.0):
        results.append(pb.gradient(lambda a, b, k=k: pb.hook(lambda g: g * k, a) * b - 0.25,
                                   2.0, 3.0))
    assert results == [(3.0, 2.0), (6.0, 2.0), (9.0, 2.0)]
    assert pb.cache_info().compiles == before + 1


def test_pullback_back_uses_its_own_trace(capsys):
    y, back = pb.pullback(lambda x: pb.showgrad(x, name="x") * 2, np.array([1.0, 2.0]))
    pb.gradient(lambda a: pb.showgrad(a, name="other") * 3, 1.0)
    assert back(np.array([1.0, 10.0]))[0].tolist() == [2.0, 20.0]
    assert _lines(capsys) == ["∂(other) = 3.0", "∂(x) = array([ 2., 20.])"]


def test_hook_needs_a_callable():
    with pytest.raises(TypeError, match="callable"):
        pb.gradient(lambda a: pb.hook(3, a), 1.0)


def test_second_derivatives_through_showgrad_and_hooks(capsys):
    assert pb.hessian(lambda a: pb.showgrad(a, name="a") ** 3, 2.0) == 12.0
    assert _lines(capsys) == ["∂(a) = 12.0"]
    assert pb.hessian(lambda a: pb.hook(lambda g: g * 2, a, compiled=True) ** 3, 2.0) == 24.0
    with pytest.raises(NotImplementedError, match="compiled=True"):
        pb.hessian(lambda a: pb.hook(lambda g: g * 2, a) ** 3, 2.0)


def test_jacobian_refuses_batched_hooks():
    with pytest.raises(NotImplementedError, match="cannot be batched"):
        pb.jacobian(lambda a: pb.showgrad(a) * 2, np.array([1.0, 2.0]))


def test_showgrad_of_a_constant_says_none(capsys):
    c = np.array(5.0)
    assert pb.gradient(lambda a: pb.showgrad(pb.sin(c), name="s") * a, 2.0) == (np.sin(5.0),)
    assert pb.gradient(lambda a: pb.showgrad(pb.ignore_derivatives(a), name="k") * a, 2.0) \
        == (2.0,)
    # the use of ignore_derivatives(a) has a gradient; it stops there
    assert _lines(capsys) == ["∂(s) = None", "∂(k) = 2.0"]
