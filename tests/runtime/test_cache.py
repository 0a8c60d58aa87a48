"""The compile cache: same code and shapes compile once, even through new lambdas."""

import numpy as np
import pytest

import pullback as pb


@pytest.fixture(autouse=True)
def on_each_device(device):
    """Every test here runs on each device."""
    with pb.device(device):
        yield


def test_second_call_with_same_code_does_not_compile():
    x = np.linspace(0, 1, 5)
    pb.gradient(lambda v: pb.sum(pb.sin(v) * v), x)
    before = pb.cache_info()
    g = pb.gradient(lambda v: pb.sum(pb.sin(v) * v), x + 1)   # a new lambda object
    after = pb.cache_info()
    assert after.compiles == before.compiles
    assert after.hits == before.hits + 1
    np.testing.assert_allclose(g[0], np.cos(x + 1) * (x + 1) + np.sin(x + 1), rtol=1e-13)


def test_new_shape_compiles_again():
    f = lambda v: pb.sum(pb.cos(v))  # noqa: E731
    pb.gradient(f, np.ones(3))
    before = pb.cache_info().compiles
    pb.gradient(f, np.ones(4))
    assert pb.cache_info().compiles == before + 1


def test_changed_python_scalar_is_a_different_program():
    for c in (2.0, 3.0):
        g = pb.gradient(lambda v, c=c: pb.sum(v * c), np.ones(2))
        np.testing.assert_array_equal(g[0], [c, c])


def test_compile_runs_without_retracing_and_sees_closure_updates():
    w = np.array([1.0, 2.0, 3.0])
    c = pb.compile(lambda x: pb.sum(w * x ** 2), np.ones(3))
    np.testing.assert_array_equal(c(np.ones(3))[0], 2 * w)
    w *= 10
    np.testing.assert_array_equal(c(np.full(3, 2.0))[0], 4 * w)
    assert "trace" in c.timings and "compile" in c.timings
    assert "array." in c.ir("trace")
    assert ("define" in c.code) if c.device == "cpu" else ("__kernel" in c.code)
