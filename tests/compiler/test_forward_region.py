"""`ad.forward` and `expand-forward`, on IR alone: the op round-trips and verifies; the
expanded region keeps the value, and reverse mode over it gives the region's derivative
with respect to its first operand only (checked against calculus), for every chunk size
and for nested regions; value-only expansion leaves no derivative work."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, TensorType, f64
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException

from pullback.compiler.autodiff.forward_region import ExpandForwardPass, has_forward_regions
from pullback.compiler.autodiff.reverse import build_vjp
from pullback.compiler.context import make_context
from pullback.compiler.dialects.ad import ForwardOp
from pullback.compiler.interpreter import evaluate_module

# f(x, c) = sum(forward(v -> sin(v) * c)(x)): df/dx = cos(x) * c; c gets no derivative.
REGION = """
func.func @f(%x: tensor<5xf64>, %c: tensor<5xf64>) -> tensor<f64> {{
  %y = ad.forward %x (%c) chunk {chunk} : tensor<5xf64>, (tensor<5xf64>) -> tensor<5xf64> {{
  ^bb0(%v: tensor<5xf64>, %w: tensor<5xf64>):
    %s = array.sin %v : tensor<5xf64>
    %m = array.mul %s, %w : tensor<5xf64>
    ad.yield %m : tensor<5xf64>
  }}
  %r = array.reduce_sum %y {{axes = array<i64: 0>}} : tensor<5xf64> -> tensor<f64>
  func.return %r : tensor<f64>
}}
"""

# g(x) = sum(forward(v -> forward(u -> u * u)(v) * v)(x)) = sum(x^3): dg/dx = 3 x^2.
NESTED = """
func.func @f(%x: tensor<3xf64>) -> tensor<f64> {
  %y = ad.forward %x () chunk 2 : tensor<3xf64>, () -> tensor<3xf64> {
  ^bb0(%v: tensor<3xf64>):
    %q = ad.forward %v () chunk 1 : tensor<3xf64>, () -> tensor<3xf64> {
    ^bb1(%u: tensor<3xf64>):
      %uu = array.mul %u, %u : tensor<3xf64>
      ad.yield %uu : tensor<3xf64>
    }
    %p = array.mul %q, %v : tensor<3xf64>
    ad.yield %p : tensor<3xf64>
  }
  %r = array.reduce_sum %y {axes = array<i64: 0>} : tensor<3xf64> -> tensor<f64>
  func.return %r : tensor<f64>
}
"""

X = np.linspace(-1.2, 1.7, 5)
C = np.array([0.5, -2.0, 1.5, 3.0, -0.25])


def _parse(text: str) -> ModuleOp:
    module = Parser(make_context(), text).parse_module()
    module.verify()
    return module


def _fn(module: ModuleOp, name: str) -> func.FuncOp:
    return next(op for op in module.ops if isinstance(op, func.FuncOp)
                and op.sym_name.data == name)


def _wrt(fn: func.FuncOp) -> list[int]:
    attr = fn.attributes["pullback.wrt"]
    assert isinstance(attr, DenseArrayBase)
    return [int(v) for v in attr.get_values()]


def test_round_trip() -> None:
    module = _parse(REGION.format(chunk=2))
    again = _parse(str(module))
    assert again.is_structurally_equivalent(module)
    assert has_forward_regions(module)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8])
def test_gradient_is_the_first_operands_only(chunk: int) -> None:
    module = _parse(REGION.format(chunk=chunk))
    ExpandForwardPass().apply(make_context(), module)
    assert not has_forward_regions(module)
    module.verify()
    (value,) = evaluate_module(module, "f", [X, C])
    np.testing.assert_allclose(value, np.sum(np.sin(X) * C), rtol=1e-14)
    vjp = build_vjp(module, _fn(module, "f"), seed=True)
    assert _wrt(vjp) == [0]  # c reaches the result through the region only: no gradient
    _, gx = evaluate_module(module, vjp.sym_name.data, [X, C])
    np.testing.assert_allclose(gx, np.cos(X) * C, rtol=1e-13, atol=1e-15)


def test_the_reverse_pass_expands_regions_itself() -> None:
    module = _parse(REGION.format(chunk=2))
    vjp = build_vjp(module, _fn(module, "f"), seed=True)
    assert not has_forward_regions(module)
    _, gx = evaluate_module(module, vjp.sym_name.data, [X, C])
    np.testing.assert_allclose(gx, np.cos(X) * C, rtol=1e-13, atol=1e-15)


def test_nested_regions() -> None:
    module = _parse(NESTED)
    x = np.array([0.5, -1.5, 2.0])
    ExpandForwardPass().apply(make_context(), module)
    vjp = build_vjp(module, _fn(module, "f"), seed=True)
    value, gx = evaluate_module(module, vjp.sym_name.data, [x])
    np.testing.assert_allclose(value, np.sum(x ** 3), rtol=1e-14)
    np.testing.assert_allclose(gx, 3 * x ** 2, rtol=1e-13)


def test_value_only_is_the_region_inlined() -> None:
    module = _parse(REGION.format(chunk=2))
    ExpandForwardPass(derivatives=False).apply(make_context(), module)
    names = [op.name for op in _fn(module, "f").body.block.ops]
    assert names == ["array.sin", "array.mul", "array.reduce_sum", "func.return"]
    (value,) = evaluate_module(module, "f", [X, C])
    np.testing.assert_allclose(value, np.sum(np.sin(X) * C), rtol=1e-14)


def test_interpreter_gives_the_regions_value() -> None:
    (value,) = evaluate_module(_parse(REGION.format(chunk=3)), "f", [X, C])
    np.testing.assert_allclose(value, np.sum(np.sin(X) * C), rtol=1e-14)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("chunk {chunk}", "chunk 0", "chunk must be >= 1, got 0"),
    ("ad.yield %m : tensor<5xf64>", "ad.yield %m, %m : tensor<5xf64>, tensor<5xf64>",
     "the region must yield one value of type tensor<5xf64>"),
])
def test_verifier(old: str, new: str, message: str) -> None:
    text = REGION.replace(old, new).format(chunk=2)
    module = Parser(make_context(), text).parse_module()
    with pytest.raises(VerifyException, match=message):
        next(op for op in module.walk() if isinstance(op, ForwardOp)).verify()


def test_verifier_region_arguments_are_the_operands() -> None:
    module = _parse(REGION.format(chunk=2))
    op = next(op for op in module.walk() if isinstance(op, ForwardOp))
    op.body.block.insert_arg(TensorType(f64, [2]), 2)
    with pytest.raises(VerifyException, match="the region's argument types"):
        op.verify()
