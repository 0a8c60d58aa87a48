"""`schedule-writes`: the ops serving an `array.assign` move to just after what they
need and after every read of the old value; the function's meaning is unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.parser import Parser

import pullback as pb
from pullback.compiler.context import make_context
from pullback.compiler.interpreter import evaluate_module
from pullback.compiler.passes import parse_pipeline

# w2 <- w2 - 0.5 * g2 and w1 <- w1 - 0.5 * g1 are computed at the end; g2 is ready
# long before (right after %g2), but w2 is read by %late, so its update must follow it.
MODULE = """
builtin.module {
  func.func @f(%w1: tensor<3xf64>, %w2: tensor<3xf64>, %x: tensor<3xf64>) -> tensor<3xf64> {
    %g1 = array.mul %x, %x : tensor<3xf64>
    %e1 = array.exp %g1 : tensor<3xf64>
    %g2 = array.sin %x : tensor<3xf64>
    %late = array.mul %w2, %e1 : tensor<3xf64>
    %out = array.tanh %late : tensor<3xf64>
    %h = array.full 5.000000e-01 : f64 : tensor<3xf64>
    %d1 = array.mul %h, %e1 : tensor<3xf64>
    %n1 = array.sub %w1, %d1 : tensor<3xf64>
    %d2 = array.mul %h, %g2 : tensor<3xf64>
    %n2 = array.sub %w2, %d2 : tensor<3xf64>
    array.assign %w1, %n1 : tensor<3xf64>
    array.assign %w2, %n2 : tensor<3xf64>
    func.return %out : tensor<3xf64>
  }
}
"""


def _run(module, seed: int = 0):
    rng = np.random.default_rng(seed)
    args = [rng.normal(size=3) for _ in range(3)]
    out = evaluate_module(module, "f", args)
    return out, args


def _order(module) -> list[str]:
    fn = next(iter(module.ops))
    return [op.results[0].name_hint for op in fn.body.block.ops if op.results]


def test_updates_move_after_their_operands_and_the_last_read():
    module = Parser(make_context(), MODULE).parse_module()
    want, want_args = _run(module)
    for p in parse_pipeline("schedule-writes").passes:
        p.apply(make_context(), module)
    module.verify()
    order = _order(module)
    # w1's update needs only e1: it moves right after it (with the constant);
    # w2's update must stay after %late, the last read of the old w2
    assert order.index("n1") < order.index("g2")
    assert order.index("late") < order.index("n2")
    got, got_args = _run(module)
    np.testing.assert_array_equal(got[0], want[0])
    for a, b in zip(got_args, want_args, strict=True):
        np.testing.assert_array_equal(a, b)


def _model(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [{"w": rng.normal(size=(32, 32)) / 6, "b": rng.normal(size=32)} for _ in range(4)]


def _loss(model, x, y):
    h = x
    for layer in model:
        h = pb.tanh(h @ layer["w"] + layer["b"])
    return pb.mean((h - y) ** 2)


@pytest.mark.parametrize("rule", [pb.optimisers.Descent(0.1), pb.optimisers.Adam(0.01)],
                         ids=lambda r: type(r).__name__)
def test_a_training_step_holds_one_parameter_gradient_at_a_time(rule):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 32)), rng.normal(size=(8, 32))
    model = _model()
    state = pb.optimisers.setup(rule, model)

    def step(model, x, y):
        value, (g, _, _) = pb.withgradient(_loss, model, x, y)
        pb.optimisers.update(state, model, g)
        return value

    c = pb.compile(step, model, x, y)
    assert 'pullback.kernel = "copy"' not in c.ir("convert-kernels-to-loops")
    # the arena never holds two weight gradients: one, with a few activations and
    # backward values of the batch (unscheduled, all four gradients wait for the end)
    weight_grad = 32 * 32 * 8
    batch_values = 8 * 32 * 8
    assert c.memory.temporaries < 2 * weight_grad + 4 * batch_values
    # and the step still equals the uncompiled composition
    ref = _model()
    ref_state = pb.optimisers.setup(rule, ref)
    for _ in range(2):
        g = pb.gradient(_loss, ref, x, y)[0]
        pb.optimisers.update(ref_state, ref, g)
        c(model, x, y)
    for a, b in zip(model, ref, strict=True):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-13, atol=1e-14)


def test_host_calls_keep_their_order(capsys):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))

    def shown_loss(model, x, y):
        h = x
        for i, layer in enumerate(model):
            h = pb.showgrad(pb.tanh(h @ layer["w"]), name=f"h{i}")
        return pb.sum((h - y) ** 2)

    def make():
        r = np.random.default_rng(3)
        return [{"w": r.normal(size=(3, 3))} for _ in range(3)]

    ref, model = make(), make()
    ref_state = pb.optimisers.setup(pb.optimisers.Descent(0.1), ref)
    state = pb.optimisers.setup(pb.optimisers.Descent(0.1), model)
    pb.optimisers.update(ref_state, ref, pb.gradient(shown_loss, ref, x, y)[0])
    want = capsys.readouterr().out

    def step(model, x, y):
        pb.optimisers.update(state, model, pb.gradient(shown_loss, model, x, y)[0])

    pb.compile(step, model, x, y)(model, x, y)
    got = capsys.readouterr().out
    def names(out: str) -> list[str]:
        return [line.split(" =")[0] for line in out.splitlines() if line.startswith("∂(")]

    assert names(got) == names(want) == ["∂(h2)", "∂(h1)", "∂(h0)"]
    for a, b in zip(model, ref, strict=True):
        np.testing.assert_allclose(a["w"], b["w"], rtol=1e-13)
