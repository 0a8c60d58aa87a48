"""The ADBench LSTM objective (one layer, b=14, diagonal weights) written as a Python
loop over the characters: its gradient at several lengths against central finite
differences of the same loop on numpy.

The loop unrolls into one straight-line program whose reverse pass is a chain as deep
as the text is long; a fixed limit anywhere in fusion or buffer planning shows up as a
length past which the gradient cannot be lowered. Ten characters once exceeded a cap on
fusion's cost-model rounds; 32 characters need more buffers (about 40 per character)
than a foreign-function call could once pass to the compiled function.
"""

import numpy as np
import pytest
from finite_differences import central_difference
from opencl_platform import NO_OPENCL

import pullback as pb
from benchmarks.workloads import lstm as lstm_workload

BITS = 14


def lstm_loss(np_like, main, extra, state, seq):
    """ADBench's loss: -1/((c-1) b) sum_t <seq[t+1], y_t - log(2 + sum exp y_t)>, the
    benchmark workload's definition run on `np_like` (pullback's DSL or numpy)."""
    return lstm_workload.loss(main, extra, state, seq, np_like)


def problem(chars, layers=1, seed=0):
    rng = np.random.default_rng(seed)
    main = rng.random((2 * layers, 4 * BITS))
    extra = rng.random((3, BITS))
    state = rng.random((2 * layers, BITS))
    seq = ((rng.integers(32, 127, chars)[:, None] >> np.arange(BITS)) & 1).astype(float)
    return main, extra, state, seq


def check_gradient(chars, device, layers=1):
    main, extra, state, seq = problem(chars, layers)
    value, (g_main, g_extra) = pb.withgradient(
        lambda m, e: lstm_loss(pb, m, e, state, seq), main, extra, device=device)
    assert value == pytest.approx(lstm_loss(np, main, extra, state, seq), rel=1e-12)
    expected_main = central_difference(lambda m: lstm_loss(np, m, extra, state, seq), main)
    expected_extra = central_difference(lambda e: lstm_loss(np, main, e, state, seq), extra)
    np.testing.assert_allclose(g_main, expected_main, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(g_extra, expected_extra, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("chars", [2, 10, 32])
def test_lstm_gradient_on_cpu(chars):
    check_gradient(chars, "cpu")


def test_two_layer_lstm_gradient_on_cpu():
    check_gradient(6, "cpu", layers=2)


@NO_OPENCL
def test_lstm_gradient_on_opencl():
    check_gradient(10, "opencl")
