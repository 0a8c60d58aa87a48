"""Gradients of programs of growing depth (`deep_chains`) against central finite
differences: a limit on program size or depth anywhere in the compiler shows up here as
a depth past which the gradient fails to lower or is wrong. `normalised` at 20 and
`shifted` at 40 are depths at which a fixed cap on fusion's cost-model rounds once left
values without a buffer."""

import numpy as np
import pytest
from deep_chains import FAMILIES, NumpyLike
from finite_differences import central_difference
from opencl_platform import NO_OPENCL

import pullback as pb

BY_NAME = {family.name: family for family in FAMILIES}
CASES = [(family.name, depth) for family in FAMILIES for depth in (1, 7)]
DEEP = [("normalised", 20), ("shifted", 40), ("recurrence", 60)]


def check(name, depth, device):
    family = BY_NAME[name]
    x, w = family.arguments(seed=depth)
    gx, gw = pb.gradient(lambda x, w: family.fn(pb, depth, x, w), x, w, device=device)
    reference = NumpyLike()
    ex = central_difference(lambda x_: family.fn(reference, depth, x_, w), x)
    ew = central_difference(lambda w_: family.fn(reference, depth, x, w_), w)
    np.testing.assert_allclose(gx, ex, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gw, ew, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("name", "depth"), CASES + DEEP)
def test_gradient_of_deep_chain_on_cpu(name, depth):
    check(name, depth, "cpu")


@NO_OPENCL
@pytest.mark.parametrize(("name", "depth"), DEEP[:1])
def test_gradient_of_deep_chain_on_opencl(name, depth):
    check(name, depth, "opencl")
