"""The `kernel` dialect and the passes around it: fuse, bufferize, convert-kernels-to-loops.

Checks the IR contract between them (text round trip, verifier messages, each pass
refusing input it does not take with the pass to run) and that the three passes in a
row compute what the one-pass lowering did: values against numpy on programs with
reductions, in-place writes, a reverse sweep and host calls.
"""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException

import pullback as pb
from pullback.compiler.context import make_context
from pullback.compiler.passes import parse_pipeline

FUSED = """
func.func @f(%x: tensor<2x3xf64>) -> (tensor<2x3xf64>, tensor<2xf64>) {
  %e, %s = kernel.fused "fused" domain [2, 3] stores 1 ins(%x : tensor<2x3xf64>)
      -> (tensor<2x3xf64>, tensor<2xf64>) {
  ^bb0(%a: tensor<2x3xf64>):
    %0 = array.exp %a : tensor<2x3xf64>
    %1 = array.reduce_sum %0 {axes = array<i64: 1>} : tensor<2x3xf64> -> tensor<2xf64>
    kernel.yield %0, %1 : tensor<2x3xf64>, tensor<2xf64>
  }
  func.return %e, %s : tensor<2x3xf64>, tensor<2xf64>
}
"""


def _parse(text: str):
    return Parser(make_context(), text).parse_module()


def _run(text: str, pipeline: str):
    module = _parse(text)
    for p in parse_pipeline(pipeline).passes:
        p.apply(make_context(), module)
    module.verify()
    return module


def test_fused_ir_prints_and_parses_back_the_same():
    module = _parse(FUSED)
    module.verify()
    text = str(module)
    assert 'kernel.fused "fused" domain [2, 3] stores 1 ins(' in text
    assert str(_parse(text)) == text
    buffered = str(_run(FUSED, "bufferize"))
    assert "outs(" in buffered and str(_parse(buffered)) == buffered


@pytest.mark.parametrize(("old", "new", "message"), [
    ("stores 1 ins", "stores 3 ins", "stores 3 of 2 yielded values"),
    ("kernel.yield %0, %1 : tensor<2x3xf64>, tensor<2xf64>", "kernel.yield %0 : tensor<2x3xf64>",
     "yields 1 values for 2 results"),
    ('domain [2, 3] stores 1', 'stores 1', "without a domain computes one special op"),
    ("stores 1 ins", "stores 1 late [1] ins", "late stores (1,) must index its 1 stores"),
    ("%x: tensor<2x3xf64>", "%x: tensor<6xf64>", "input 0"),
])
def test_verifier_names_what_is_wrong(old, new, message):
    assert old in FUSED
    text = FUSED.replace(old, new)
    if old.startswith("%x"):  # the operand's type, not the region's argument
        text = text.replace("ins(%x : tensor<2x3xf64>)", "ins(%x : tensor<6xf64>)")
    module = _parse(text)
    with pytest.raises(VerifyException, match=message.replace("(", r"\(").replace(")", r"\)")):
        module.verify()


def test_region_reads_nothing_from_above():
    text = FUSED.replace("%0 = array.exp %a", "%0 = array.exp %x")
    with pytest.raises(VerifyException):
        _parse(text).verify()


def test_each_pass_names_the_pass_its_input_needs():
    traced = """
    func.func @f(%x: tensor<3xf64>) -> tensor<3xf64> {
      %0 = ad.stop_gradient %x : tensor<3xf64>
      func.return %0 : tensor<3xf64>
    }
    """
    with pytest.raises(ValueError, match="run drop-identities first"):
        _run(traced, "fuse")
    array_level = """
    func.func @f(%x: tensor<3xf64>) -> tensor<3xf64> {
      %0 = array.sin %x : tensor<3xf64>
      func.return %0 : tensor<3xf64>
    }
    """
    with pytest.raises(ValueError, match="run fuse first"):
        _run(array_level, "bufferize")
    with pytest.raises(ValueError, match="run bufferize first"):
        _run(FUSED, "convert-kernels-to-loops")  # kernel.fused still in tensor form


def test_fuse_twice_changes_nothing():
    once = str(_run(FUSED, "fuse"))
    assert once == str(_run(once, "fuse"))


# -- the split lowering against numpy ----------------------------------------------

RNG = np.random.default_rng(7)


def softmax_rows(x):
    e = pb.exp(x - pb.max(x, axis=1, keepdims=True))
    return e / pb.sum(e, axis=1, keepdims=True)


def test_values_and_gradients_match_numpy(device):
    x = RNG.standard_normal((5, 4))
    e = np.exp(x - x.max(axis=1, keepdims=True))
    want = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pb.compile(softmax_rows, x, mode="value", device=device)(x),
                               want, rtol=1e-12)
    w = RNG.standard_normal((4, 3))

    def loss(w, x):
        return pb.sum(softmax_rows(pb.tanh(x @ w)) * np.arange(3.0))

    grad = pb.gradient(loss, w, x, device=device)[0]
    h = 1e-6
    fd = np.zeros_like(w)
    for i in np.ndindex(*w.shape):
        d = np.zeros_like(w)
        d[i] = h
        plus = _np_loss(w + d, x)
        minus = _np_loss(w - d, x)
        fd[i] = (plus - minus) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def _np_loss(w, x):
    t = np.tanh(x @ w)
    e = np.exp(t - t.max(axis=1, keepdims=True))
    return np.sum(e / e.sum(axis=1, keepdims=True) * np.arange(3.0))


def test_in_place_update_reads_every_old_element_first(device):
    model = {"w": RNG.standard_normal(6)}
    x = RNG.standard_normal(6)
    state = pb.optimisers.setup(pb.optimisers.Descent(0.5), model)

    def loss(model, x):
        return pb.sum(model["w"] * model["w"] * x)

    def step(model, x):
        value, (g, _) = pb.withgradient(loss, model, x)
        pb.optimisers.update(state, model, g)  # w - 0.5 * 2 w x: reads w where it writes
        return value  # the old w: the write takes effect on return

    c = pb.compile(step, model, x, device=device)
    assert "late [0]" in c.ir("bufferize")
    old = model["w"].copy()
    value = c(model, x)
    np.testing.assert_allclose(value, np.sum(old * old * x), rtol=1e-12)
    np.testing.assert_allclose(model["w"], old - 0.5 * 2 * old * x, rtol=1e-12)
