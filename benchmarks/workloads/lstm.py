"""`lstm`: the ADBench LSTM objective, l=2 layers, b=14, c=16 characters, float64.

Weights are elementwise ("diagonal"). `main` (2l x 4b) holds per layer a weight row
and a bias row, each in four blocks: forget, input, output, change; `extra` (3 x b)
holds the input weight, output weight and output bias; `state` (2l x b) holds each
layer's h and s, carried from character to character; `seq` (c x b) holds each
character's code point as b binary digits. For character t the prediction is

    z = seq[t] * in_w;  per layer: z = cell(z);  y = z * out_w + out_b

with the cell f = σ(z W_f + B_f), i = σ(h W_i + B_i), o = σ(z W_o + B_o),
g = tanh(h W_c + B_c), s = f s + i g, h = o tanh(s). The loss is

    -1 / ((c - 1) b) * Σ_{t < c-1} Σ_k seq[t+1, k] (y_k - log(2 + Σ_j exp y_j))

(the "+ 2" is ADBench's). The gradient is taken with respect to `main` and `extra`
(8lb + 3b numbers). Every system loops over the characters in Python, so pullback
and JAX trace one straight-line program of c - 1 steps. ADBench's own sizes
(c = 1024 and up) make that program too long to compile in a benchmark run; c = 16
keeps the first call to seconds while every step is still a chain through time.
"""

from __future__ import annotations

import numpy as np

import pullback as pb
from benchmarks.workload import Problem, Workload


def setup(layers: int = 2, bits: int = 14, chars: int = 16) -> Problem:
    """Parameters and state uniform in [0, 1) (seed 31337, as ADBench's generator draws
    them); the text is `chars` printable ASCII code points from the same stream (ADBench
    reads a fixed text; the values do not change the work)."""
    if layers < 1 or bits < 7 or chars < 2:
        raise ValueError(f"need layers >= 1, bits >= 7 (printable ASCII), chars >= 2; got "
                         f"layers={layers}, bits={bits}, chars={chars}")
    rng = np.random.default_rng(31337)
    main = rng.random((2 * layers, 4 * bits))
    extra = rng.random((3, bits))
    state = rng.random((2 * layers, bits))
    code_points = rng.integers(32, 127, chars)
    seq = ((code_points[:, None] >> np.arange(bits)) & 1).astype(np.float64)
    return Problem(params=(main, extra), data=(state, seq),
                   sizes={"l": layers, "b": bits, "c": chars})


def _sigmoid(x, exp):
    return 1.0 / (1.0 + exp(-x))


def loss(main, extra, state, seq, np_like):
    """The objective for any numpy-like module (pullback's DSL, numpy, jax.numpy)."""
    b = seq.shape[1]
    layers = main.shape[0] // 2
    hidden = [state[2 * j] for j in range(layers)]
    cell = [state[2 * j + 1] for j in range(layers)]
    total = 0.0
    for t in range(seq.shape[0] - 1):
        z = seq[t] * extra[0]
        for j in range(layers):
            w, bias = main[2 * j], main[2 * j + 1]
            forget = _sigmoid(z * w[:b] + bias[:b], np_like.exp)
            ingate = _sigmoid(hidden[j] * w[b:2 * b] + bias[b:2 * b], np_like.exp)
            outgate = _sigmoid(z * w[2 * b:3 * b] + bias[2 * b:3 * b], np_like.exp)
            change = np_like.tanh(hidden[j] * w[3 * b:] + bias[3 * b:])
            cell[j] = forget * cell[j] + ingate * change
            hidden[j] = outgate * np_like.tanh(cell[j])
            z = hidden[j]
        y = z * extra[1] + extra[2]
        normaliser = np_like.log(2.0 + np_like.sum(np_like.exp(y)))
        total = total + np_like.sum(seq[t + 1] * (y - normaliser))
    return -total / ((seq.shape[0] - 1) * b)


def objective(main, extra, state, seq):
    """The LSTM loss in the DSL."""
    return loss(main, extra, state, seq, pb)


def numpy_objective(main, extra, state, seq) -> float:
    return float(loss(main, extra, state, seq, np))


def _cell(x, h, s, w, bias):
    """One layer's forward step: the gates and the new state."""
    b = x.size
    pre = np.concatenate([x, h, x, h]) * w + bias
    gates = 1.0 / (1.0 + np.exp(-pre[:3 * b]))
    forget, ingate, outgate = gates[:b], gates[b:2 * b], gates[2 * b:]
    change = np.tanh(pre[3 * b:])
    s_new = forget * s + ingate * change
    return forget, ingate, outgate, change, s_new, outgate * np.tanh(s_new)


def numpy_gradient(main, extra, state, seq):
    """Reverse through time by hand: a forward sweep keeping every gate, then a backward
    sweep carrying the gradients of each layer's h and s."""
    c, b = seq.shape
    layers = main.shape[0] // 2
    h = [state[2 * j].copy() for j in range(layers)]
    s = [state[2 * j + 1].copy() for j in range(layers)]
    tape = []
    for t in range(c - 1):
        z = seq[t] * extra[0]
        steps = []
        for j in range(layers):
            forget, ingate, outgate, change, s_new, h_new = _cell(z, h[j], s[j], main[2 * j],
                                                                 main[2 * j + 1])
            steps.append((z, h[j], s[j], forget, ingate, outgate, change, s_new))
            h[j], s[j] = h_new, s_new
            z = h_new
        tape.append((steps, z))
    d_main, d_extra = np.zeros_like(main), np.zeros_like(extra)
    d_h = [np.zeros(b) for _ in range(layers)]
    d_s = [np.zeros(b) for _ in range(layers)]
    scale = -1.0 / ((c - 1) * b)
    for t in reversed(range(c - 1)):
        steps, top = tape[t]
        y = top * extra[1] + extra[2]
        d_norm = scale * seq[t + 1]
        d_y = d_norm - d_norm.sum() * np.exp(y) / (2.0 + np.exp(y).sum())
        d_extra[1] += d_y * top
        d_extra[2] += d_y
        d_z = d_y * extra[1]
        for j in reversed(range(layers)):
            x, h_prev, s_prev, forget, ingate, outgate, change, s_new = steps[j]
            d_hj = d_h[j] + d_z
            tanh_s = np.tanh(s_new)
            d_sj = d_s[j] + d_hj * outgate * (1.0 - tanh_s * tanh_s)
            d_pre = np.concatenate([
                d_sj * s_prev * forget * (1.0 - forget),
                d_sj * change * ingate * (1.0 - ingate),
                d_hj * tanh_s * outgate * (1.0 - outgate),
                d_sj * ingate * (1.0 - change * change),
            ])
            w = main[2 * j]
            d_main[2 * j] += d_pre * np.concatenate([x, h_prev, x, h_prev])
            d_main[2 * j + 1] += d_pre
            d_z = d_pre[:b] * w[:b] + d_pre[2 * b:3 * b] * w[2 * b:3 * b]
            d_h[j] = d_pre[b:2 * b] * w[b:2 * b] + d_pre[3 * b:] * w[3 * b:]
            d_s[j] = d_sj * forget
        d_extra[0] += d_z * seq[t]
    return d_main, d_extra


def jax_objective(main, extra, state, seq):
    """The same loop in JAX (traced into one straight-line program, like pullback's)."""
    import jax.numpy as jnp

    return loss(main, extra, state, seq, jnp)


WORKLOAD = Workload(
    name="lstm",
    summary="ADBench LSTM objective, l=2 b=14 c=16, float64",
    setup=setup,
    small={"layers": 2, "bits": 7, "chars": 4},
    objective=objective,
    numpy_objective=numpy_objective,
    numpy_gradient=numpy_gradient,
    jax_objective=jax_objective,
    rtol=1e-9,
)
