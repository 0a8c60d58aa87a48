"""The callback ops of the `ad` dialect: round trip, verification, their derivative
rules (the host call in the backward pass, the `unreached` call, the inlined compiled
hook), the interpreter, the lowering to a host-call step, `pullback opt`, and vmap's
clear refusal."""

from __future__ import annotations

from io import StringIO

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

from pullback.cli import main
from pullback.compiler.context import make_context
from pullback.compiler.dialects import callback_table
from pullback.compiler.dialects.ad import CallbackGradOp, CallbackOp, HookOp
from pullback.compiler.interpreter import evaluate_module
from pullback.compiler.passes import get_pass

# f(x, y) = sum(callback(x) * y) + sum(callback(x)): the first use has gradient y, the
# second 1; a third use feeds nothing, so it is unreached. The compiled hook doubles the
# gradient flowing into y.
MODULE = """
builtin.module {
  func.func @f(%x: tensor<3xf64>, %y: tensor<3xf64>, %t: tensor<i64>) -> tensor<f64> {
    %a = ad.callback %x, %t slot 0 kind "showgrad" label "x" : tensor<3xf64>, tensor<i64>
    %b = ad.callback %x, %t slot 1 kind "hook" label "h" : tensor<3xf64>, tensor<i64>
    %c = ad.callback %x, %t slot 2 kind "showgrad" label "unused" : tensor<3xf64>, tensor<i64>
    %h = ad.hook %y : tensor<3xf64> {
    ^bb0(%g: tensor<3xf64>):
      %two = array.full 2.0 : f64 : tensor<3xf64>
      %g2 = array.mul %g, %two : tensor<3xf64>
      ad.yield %g2 : tensor<3xf64>
    }
    %p = array.mul %a, %h : tensor<3xf64>
    %s = array.add %p, %b : tensor<3xf64>
    %r = array.reduce_sum %s {axes = array<i64: 0>} : tensor<3xf64> -> tensor<f64>
    func.return %r : tensor<f64>
  }
}
"""


def _parse(text: str = MODULE) -> ModuleOp:
    module = Parser(make_context(), text).parse_module()
    module.verify()
    return module


def _vjp(module: ModuleOp) -> ModuleOp:
    get_pass("autodiff")(func="f", seed=True).apply(make_context(), module)
    module.verify()
    return module


class _Recorder:
    """A callback table whose slots record what they get; slot 1 negates."""

    def __init__(self) -> None:
        self.seen: dict[int, list[object]] = {0: [], 1: [], 2: []}
        self.table = callback_table.CallbackTable()
        for slot in range(3):
            self.table.add(self._slot(slot), (3,))
        self.token = callback_table.register(self.table)

    def _slot(self, slot: int):
        def fn(value):
            self.seen[slot].append(None if value is None else value.copy())
            return -value if slot == 1 and value is not None else None
        return fn


def test_round_trip_custom_and_generic() -> None:
    module = _parse()
    again = Parser(make_context(), str(module)).parse_module()
    assert again.is_structurally_equivalent(module)
    buf = StringIO()
    Printer(stream=buf, print_generic_format=True).print_op(module)
    assert Parser(make_context(), buf.getvalue()).parse_module().is_structurally_equivalent(
        module)


@pytest.mark.parametrize("bad, message", [
    ('%t: tensor<f64>', "callback table must be tensor<i64>"),
    ('%t: tensor<2xi64>', "callback table must be tensor<i64>"),
])
def test_table_type_is_checked(bad: str, message: str) -> None:
    text = MODULE.replace("%t: tensor<i64>", bad).replace(", tensor<i64>", ", " + bad[4:])
    with pytest.raises(VerifyException, match=message):
        _parse(text)


def test_kind_is_checked() -> None:
    with pytest.raises(VerifyException, match="kind must be one of showgrad, hook"):
        _parse(MODULE.replace('kind "hook"', 'kind "print"'))


def test_hook_region_must_yield_its_type() -> None:
    text = MODULE.replace("ad.yield %g2 : tensor<3xf64>", "ad.yield %g : tensor<3xf64>")
    _parse(text)  # same type: fine
    bad = MODULE.replace("^bb0(%g: tensor<3xf64>)", "^bb0(%g: tensor<3xf64>, %k: tensor<3xf64>)")
    with pytest.raises(VerifyException, match="one argument"):
        _parse(bad)


def test_reverse_pass_emits_host_calls_and_unreached() -> None:
    vjp = next(op for op in _vjp(_parse()).ops if op.sym_name.data == "f_vjp")
    calls = [op for op in vjp.walk() if isinstance(op, CallbackGradOp)]
    by_slot = {op.slot.value.data: op for op in calls}
    assert sorted(by_slot) == [0, 1, 2]
    assert by_slot[2].unreached is not None
    assert by_slot[0].unreached is None and by_slot[1].unreached is None
    # the compiled hook was inlined: its region's mul appears outside any ad.hook
    assert any(op.name == "array.mul" and op.parent_op() is vjp for op in vjp.walk())


def test_interpreter_runs_the_backward_pass_with_host_calls() -> None:
    rec = _Recorder()
    x, y = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    value, dx, dy = evaluate_module(_vjp(_parse()), "f_vjp", [x, y, rec.token])
    assert value == pytest.approx(np.sum(x * y) + np.sum(x))
    # use 0 gets y, use 1 gets 1 (negated by slot 1); the compiled hook doubles dy
    np.testing.assert_allclose(rec.seen[0][0], y)
    np.testing.assert_allclose(rec.seen[1][0], np.ones(3))
    assert rec.seen[2] == [None]
    np.testing.assert_allclose(dx, y - 1)
    np.testing.assert_allclose(dy, 2 * x)


def test_forward_mode_passes_tangents_through() -> None:
    module = _parse()
    get_pass("jvp")(func="f").apply(make_context(), module)
    module.verify()
    rec = _Recorder()
    x, y = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    tx, ty = np.array([1.0, 0.0, 2.0]), np.array([0.5, 1.0, 0.0])
    _, tangent = evaluate_module(module, "f_jvp", [x, y, rec.token, tx, ty])
    assert float(tangent) == pytest.approx(np.sum(tx * y + x * ty) + np.sum(tx))
    assert rec.seen == {0: [], 1: [], 2: []}


def test_lowering_makes_host_call_steps() -> None:
    module = _vjp(_parse())
    get_pass("simplify")().apply(make_context(), module)
    get_pass("convert-array-to-loops")(function="f_vjp").apply(make_context(), module)
    module.verify()
    text = str(module)
    assert text.count("func.call @pullback_host_call_f64") == 3
    assert "ad." not in text


def test_cpu_backend_runs_host_calls() -> None:
    from pullback.compiler.backends.llvm import compile_function

    rec = _Recorder()
    exe = compile_function(_vjp(_parse()), "f_vjp")
    x, y = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    _, dx, dy = exe.run([x, y, rec.token])
    np.testing.assert_allclose(dx, y - 1)
    np.testing.assert_allclose(dy, 2 * x)
    np.testing.assert_allclose(rec.seen[0][0], y)
    assert rec.seen[2] == [None]


def test_vmap_refuses_batched_callbacks() -> None:
    module = _parse()
    get_pass("autodiff")(func="f").apply(make_context(), module)
    with pytest.raises(NotImplementedError, match="cannot be batched"):
        get_pass("vmap")(func="f_vjp", args=(3,), size=2).apply(make_context(), module)


def test_opt_command_runs_the_passes(tmp_path, capsys) -> None:
    path = tmp_path / "callbacks.mlir"
    path.write_text(MODULE)
    assert main(["opt", str(path), "-p", "autodiff{func=f seed=true},simplify"]) == 0
    out = capsys.readouterr().out
    assert "ad.callback_grad" in out and "unreached" in out
    reparsed = _parse(out)
    assert any(isinstance(op, CallbackOp) for op in reparsed.walk())
    assert any(isinstance(op, HookOp) for op in reparsed.walk())
