"""Every DSL function, compiled end to end: reverse mode through `pb.gradient` and
forward mode through the `jvp` pass, against central finite differences of the same
function evaluated eagerly by numpy, in float64 and float32, on 0-d, size-1 and
broadcast shapes."""

import numpy as np
import pytest
from dsl_op_table import ALL, NEEDS_AXIS, SHAPES
from opencl_platform import NO_OPENCL

import pullback as pb
from pullback.compiler.backends.llvm import compile_function
from pullback.compiler.context import make_context
from pullback.compiler.passes import get_pass
from pullback.program import trace_program


def _inputs(n, shape, dom, dtype, seed):
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(*dom, size=shape).astype(dtype) for _ in range(n)]
    if n == 2 and shape:
        xs[1] = np.ascontiguousarray(xs[1][..., :1])  # broadcast along the last axis
    return xs


def _objective(fn, weights):
    def f(*xs):
        return pb.sum(fn(*xs) * weights)
    return f


def _fd_gradient(f, xs, eps):
    grads = []
    for i, x in enumerate(xs):
        g = np.zeros(x.shape)
        for idx in np.ndindex(x.shape):
            up = [v.astype(np.float64).copy() for v in xs]
            dn = [v.astype(np.float64).copy() for v in xs]
            up[i][idx] += eps
            dn[i][idx] -= eps
            g[idx] = (f(*up) - f(*dn)) / (2 * eps)
        grads.append(g)
    return grads


# cpu: every shape; opencl (slower to build): a 0-d and a 2-d case of every op
CASES = [(name, shape, "cpu") for name in sorted(ALL) for shape in SHAPES] + [
    pytest.param(name, shape, "opencl", marks=NO_OPENCL)
    for name in sorted(ALL) for shape in [(), (2, 3)]]


@pytest.mark.parametrize(("name", "shape", "device"), CASES, ids=str)
def test_reverse_mode_matches_finite_differences(name, shape, device):
    fn, n, dom = ALL[name]
    if name in NEEDS_AXIS and shape == ():
        shape = (3,)
    xs = _inputs(n, shape, dom, np.float64, hash(name) % 1000)
    out_shape = np.shape(fn(*xs))
    w = np.random.default_rng(1).uniform(0.5, 1.5, out_shape)
    f = _objective(fn, w)
    got = pb.gradient(f, *xs, device=device)
    want = _fd_gradient(f, xs, 1e-6)
    if device != "cpu":  # parity with the CPU backend
        for g, c in zip(got, pb.gradient(f, *xs)):
            assert (g is None) == (c is None)
            if g is not None:
                np.testing.assert_allclose(g, c, rtol=1e-12, atol=1e-14)
    for g, e in zip(got, want):
        if g is None:  # no differentiable path (sign): finite differences must be zero
            assert not np.any(e)
            continue
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(ALL))
def test_float32_reverse_mode(name, device):
    fn, n, dom = ALL[name]
    xs = _inputs(n, (2, 3), dom, np.float32, 7)
    w = np.random.default_rng(2).uniform(0.5, 1.5, np.shape(fn(*xs))).astype(np.float32)
    f = _objective(fn, w)
    got = pb.gradient(f, *xs, device=device)
    if device != "cpu":  # parity with the CPU backend
        for g, c in zip(got, pb.gradient(f, *xs)):
            if g is not None:
                np.testing.assert_allclose(g, c, rtol=1e-5, atol=1e-6)
    want = _fd_gradient(f, xs, 1e-5)
    for g, e in zip(got, want):
        if g is None:
            assert not np.any(e)
            continue
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, e, rtol=2e-3, atol=2e-3)


def _compiled_jvp(fn, xs):
    program = trace_program(fn, xs)
    module = program.module.clone()
    get_pass("jvp")(func=program.name).apply(make_context(), module)
    exe = compile_function(module, program.name + "_jvp")
    return program, exe


@pytest.mark.parametrize("shape", [(), (2, 3)], ids=str)
@pytest.mark.parametrize("name", sorted(ALL))
def test_forward_mode_matches_finite_differences(name, shape):
    fn, n, dom = ALL[name]
    if name in NEEDS_AXIS and shape == ():
        shape = (3,)
    xs = _inputs(n, shape, dom, np.float64, 11)
    ts = _inputs(n, shape, (-1.0, 1.0), np.float64, 12)
    program, exe = _compiled_jvp(fn, xs)
    outs = exe.run([*program.arguments(xs), *ts])
    tangent = outs[-1]
    eps = 1e-6
    up = fn(*[x + eps * t for x, t in zip(xs, ts)])
    dn = fn(*[x - eps * t for x, t in zip(xs, ts)])
    np.testing.assert_allclose(outs[0], fn(*xs), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tangent, (up - dn) / (2 * eps), rtol=1e-6, atol=1e-7)


def test_awkward_points():
    # prod with one and with two zeros; x**2 at 0; maximum with a tie
    (g,) = pb.gradient(lambda x: pb.prod(x), np.array([2.0, 0.0, 3.0]))
    np.testing.assert_array_equal(g, [0.0, 6.0, 0.0])
    (g,) = pb.gradient(lambda x: pb.prod(x), np.array([0.0, 0.0, 3.0]))
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.0])
    assert pb.gradient(lambda x: x ** 2, 0.0) == (0.0,)
    assert pb.gradient(lambda x: x ** 2.5, 0.0) == (0.0,)
    assert pb.gradient(lambda x: pb.sum(pb.abs(x)), np.array([0.0]))[0][0] == 0.0
