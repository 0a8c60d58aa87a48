"""`ad.callback` of kind `eager_update` in IR: round trip, the reverse pass (the
parameter's complete gradient goes to the host and no gradient result is made for
it; an unreached parameter still reports), the interpreter and the CPU backend
running the host calls, and the clear refusals of forward mode and vmap."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp
from xdsl.parser import Parser

from pullback.compiler.context import make_context
from pullback.compiler.dialects import callback_table
from pullback.compiler.dialects.ad import CallbackGradOp
from pullback.compiler.interpreter import evaluate_module
from pullback.compiler.passes import get_pass

# f(w, u, x) = sum(w' * x) + sum(w' * w'), w' = eager(w); u' = eager(u) is unused, so
# u's update is unreached. Only x gets a gradient result: sum(w) + 0.
MODULE = """
builtin.module {
  func.func @f(%w: tensor<3xf64>, %u: tensor<3xf64>, %x: tensor<3xf64>, %t: tensor<i64>)
      -> tensor<f64> {
    %a = ad.callback %w, %t slot 0 kind "eager_update" label "w" : tensor<3xf64>, tensor<i64>
    %b = ad.callback %u, %t slot 1 kind "eager_update" label "u" : tensor<3xf64>, tensor<i64>
    %p = array.mul %a, %x : tensor<3xf64>
    %q = array.mul %a, %a : tensor<3xf64>
    %s = array.add %p, %q : tensor<3xf64>
    %r = array.reduce_sum %s {axes = array<i64: 0>} : tensor<3xf64> -> tensor<f64>
    func.return %r : tensor<f64>
  }
}
"""


def _parse() -> ModuleOp:
    module = Parser(make_context(), MODULE).parse_module()
    module.verify()
    return module


def _vjp() -> ModuleOp:
    module = _parse()
    get_pass("autodiff")(func="f", seed=True).apply(make_context(), module)
    module.verify()
    return module


class _Recorder:
    """A callback table whose two slots record the gradients they get."""

    def __init__(self) -> None:
        self.seen: dict[int, list[np.ndarray | None]] = {0: [], 1: []}
        self.table = callback_table.CallbackTable()
        for slot in range(2):
            self.table.add(self._slot(slot), (3,))
        self.token = callback_table.register(self.table)

    def _slot(self, slot: int):
        def fn(value):
            self.seen[slot].append(None if value is None else value.copy())
            return None
        return fn


def test_round_trip() -> None:
    module = _parse()
    again = Parser(make_context(), str(module)).parse_module()
    assert again.is_structurally_equivalent(module)
    assert 'kind "eager_update"' in str(module)


def test_reverse_pass_gives_no_gradient_for_updated_parameters() -> None:
    vjp = next(op for op in _vjp().ops if op.sym_name.data == "f_vjp")
    wrt = vjp.attributes["pullback.wrt"]
    assert isinstance(wrt, DenseArrayBase)
    assert list(wrt.get_values()) == [2]
    assert len(vjp.function_type.outputs.data) == 2
    calls = {op.slot.value.data: op for op in vjp.walk() if isinstance(op, CallbackGradOp)}
    assert sorted(calls) == [0, 1]
    assert calls[0].unreached is None and calls[1].unreached is not None
    assert all(op.kind.data == "eager_update" for op in calls.values())


def _run(evaluate) -> None:
    rec = _Recorder()
    w, u, x = np.array([1.0, 2.0, 3.0]), np.array([5.0, 6.0, 7.0]), np.array([0.5, -1.0, 2.0])
    value, dx = evaluate([w, u, x, rec.token])
    assert float(value) == pytest.approx(np.sum(w * x) + np.sum(w * w), rel=1e-15)
    np.testing.assert_allclose(dx, w, rtol=1e-15)
    np.testing.assert_allclose(rec.seen[0][0], x + 2 * w, rtol=1e-15)
    assert len(rec.seen[0]) == 1 and rec.seen[1] == [None]


def test_interpreter_hands_the_complete_gradient_to_the_host() -> None:
    _run(lambda inputs: evaluate_module(_vjp(), "f_vjp", inputs))


def test_cpu_backend_hands_the_complete_gradient_to_the_host() -> None:
    from pullback.compiler.backends.llvm import compile_function

    exe = compile_function(_vjp(), "f_vjp")
    _run(exe.run)


def test_forward_mode_is_refused() -> None:
    module = _parse()
    with pytest.raises(NotImplementedError, match="reverse pass only"):
        get_pass("jvp")(func="f").apply(make_context(), module)


def test_vmap_is_refused() -> None:
    module = _parse()
    get_pass("autodiff")(func="f").apply(make_context(), module)
    with pytest.raises(NotImplementedError, match="eager_update.*cannot be batched"):
        get_pass("vmap")(func="f_vjp", args=(2,), size=2).apply(make_context(), module)
