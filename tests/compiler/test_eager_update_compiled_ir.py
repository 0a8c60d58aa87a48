"""`ad.eager_update` (the compiled optimiser step) in IR: round trip, verifier, the
reverse pass inlining the step and assigning the parameter and state, the
interpreter and both backends writing them in place, and refusals (jvp, vmap)."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException

from pullback.compiler.context import make_context
from pullback.compiler.dialects.array import AssignOp
from pullback.compiler.interpreter import evaluate_module
from pullback.compiler.passes import get_pass

# Momentum on w: v' = 0.5 v + g, w' = w - 0.1 v'. u's update is unreached (u unused).
# f(w, v, u, x) = sum(w * x) + sum(w * w): x gets the gradient w, w gets none.
STEP = """
    ^bb0(%p: tensor<3xf64>, %g: tensor<3xf64>, %s: tensor<3xf64>):
      %h = array.full 5.000000e-01 : f64 : tensor<3xf64>
      %hs = array.mul %h, %s : tensor<3xf64>
      %nv = array.add %hs, %g : tensor<3xf64>
      %lr = array.full 1.000000e-01 : f64 : tensor<3xf64>
      %d = array.mul %lr, %nv : tensor<3xf64>
      %np = array.sub %p, %d : tensor<3xf64>
      ad.yield %np, %nv : tensor<3xf64>, tensor<3xf64>
"""
MODULE = f"""
builtin.module {{
  func.func @f(%w: tensor<3xf64>, %v: tensor<3xf64>, %u: tensor<3xf64>, %x: tensor<3xf64>)
      -> tensor<f64> {{
    %a = ad.eager_update %w(%v) "w" : tensor<3xf64>, (tensor<3xf64>) {{{STEP}    }}
    %b = ad.eager_update %u(%v) "u" : tensor<3xf64>, (tensor<3xf64>) {{{STEP}    }}
    %p = array.mul %a, %x : tensor<3xf64>
    %q = array.mul %a, %a : tensor<3xf64>
    %s = array.add %p, %q : tensor<3xf64>
    %r = array.reduce_sum %s {{axes = array<i64: 0>}} : tensor<3xf64> -> tensor<f64>
    func.return %r : tensor<f64>
  }}
}}
"""


def _parse(text: str = MODULE) -> ModuleOp:
    module = Parser(make_context(), text).parse_module()
    module.verify()
    return module


def _vjp() -> ModuleOp:
    module = _parse()
    get_pass("autodiff")(func="f", seed=True).apply(make_context(), module)
    module.verify()
    return module


def test_round_trip() -> None:
    module = _parse()
    again = Parser(make_context(), str(module)).parse_module()
    assert again.is_structurally_equivalent(module)


def test_verifier_checks_the_region_signature() -> None:
    bad = MODULE.replace("ad.yield %np, %nv : tensor<3xf64>, tensor<3xf64>",
                         "ad.yield %np : tensor<3xf64>")
    with pytest.raises(VerifyException, match="must yield the new param and states"):
        _parse(bad)


def test_reverse_pass_assigns_parameter_and_state_and_gives_no_gradient() -> None:
    vjp = next(op for op in _vjp().ops if op.sym_name.data == "f_vjp")
    wrt = vjp.attributes["pullback.wrt"]
    assert isinstance(wrt, DenseArrayBase)
    assert list(wrt.get_values()) == [3]
    assigns = [op for op in vjp.body.block.ops if isinstance(op, AssignOp)]
    # only w's update is reached: w and the state v are assigned, u is not
    assert sorted(op.target.index for op in assigns) == [0, 1]


def _inputs() -> list[np.ndarray]:
    return [np.array([1.0, 2.0, 3.0]), np.array([0.2, -0.4, 1.0]),
            np.array([5.0, 6.0, 7.0]), np.array([0.5, -1.0, 2.0])]


def _check(run) -> None:
    w, v, u, x = _inputs()
    args = [w.copy(), v.copy(), u.copy(), x.copy()]
    value, dx = run(args)
    assert float(value) == pytest.approx(np.sum(w * x) + np.sum(w * w), rel=1e-14)
    np.testing.assert_allclose(dx, w, rtol=1e-15)
    g = x + 2 * w
    v_new = 0.5 * v + g
    np.testing.assert_allclose(args[1], v_new, rtol=1e-15)
    np.testing.assert_allclose(args[0], w - 0.1 * v_new, rtol=1e-15)
    np.testing.assert_array_equal(args[2], u)


def test_interpreter_writes_parameter_and_state() -> None:
    _check(lambda args: evaluate_module(_vjp(), "f_vjp", args))


def test_backends_write_parameter_and_state_in_place(device) -> None:
    if device == "cpu":
        from pullback.compiler.backends.llvm import compile_function
    else:
        from pullback.compiler.backends.opencl import compile_function
    exe = compile_function(_vjp(), "f_vjp")
    _check(exe.run)


def test_forward_mode_is_refused() -> None:
    with pytest.raises(NotImplementedError, match="reverse pass only"):
        get_pass("jvp")(func="f").apply(make_context(), _parse())


def test_vmap_is_refused() -> None:
    with pytest.raises(NotImplementedError, match="eager_update.*cannot be batched"):
        get_pass("vmap")(func="f", args=(0,), size=2).apply(make_context(), _parse())
    module = _parse()
    get_pass("autodiff")(func="f").apply(make_context(), module)
    with pytest.raises(NotImplementedError, match=r"array.assign\) cannot be batched"):
        get_pass("vmap")(func="f_vjp", args=(4,), size=2).apply(make_context(), module)


def test_eager_update_pass_leaves_only_the_writes() -> None:
    from pullback.compiler.passes import parse_pipeline

    module = _parse()
    for p in parse_pipeline('autodiff{func="f" seed=true},drop-eager-updates,simplify,dce').passes:
        p.apply(make_context(), module)
    module.verify()
    text = str(module)
    assert "ad.eager_update" not in text
    assert text.count("array.assign") == 2
    _check(lambda args: evaluate_module(module, "f_vjp", args))
