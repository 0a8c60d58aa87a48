"""The `ad` dialect: `ad.stop_gradient` round-trips, verifies, has zero derivative rules,
and is gone before lowering, so the backends compute the identity."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f32, f64
from xdsl.ir import Block, Region
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException

from pullback.compiler.autodiff.forward import JvpPass
from pullback.compiler.autodiff.reverse import AutodiffPass
from pullback.compiler.autodiff.rules import JVP_RULES, VJP_RULES
from pullback.compiler.backends.llvm import compile_function
from pullback.compiler.context import make_context
from pullback.compiler.conversion.array_to_loops import ConvertArrayToLoopsPass
from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.ad import Ad, ForwardOp, StopGradientOp

V3 = TensorType(f64, [3])


def _module() -> ModuleOp:
    """f(x) = (x * stop_gradient(x), x): the first result's derivative is x, not 2x."""
    block = Block(arg_types=[V3])
    (x,) = block.args
    stopped = StopGradientOp(x)
    prod = A.MulOp(x, stopped)
    block.add_ops([stopped, prod, func.ReturnOp(prod, x)])
    return ModuleOp([func.FuncOp("f", ([V3], [V3, V3]), Region(block))])


def _function(module: ModuleOp, name: str) -> func.FuncOp:
    return next(op for op in module.ops if isinstance(op, func.FuncOp)
                and op.sym_name.data == name)


@pytest.mark.parametrize("element", [f64, f32], ids=["f64", "f32"])
def test_round_trip(element) -> None:
    t = TensorType(element, [2, 0, 4])
    block = Block(arg_types=[t])
    op = StopGradientOp(block.args[0])
    block.add_ops([op, func.ReturnOp(op)])
    module = ModuleOp([func.FuncOp("g", ([t], [t]), Region(block))])
    module.verify()
    text = str(module)
    assert "ad.stop_gradient" in text
    parsed = Parser(make_context(), text).parse_module()
    parsed.verify()
    assert parsed.is_structurally_equivalent(module)


def test_result_type_must_match_operand() -> None:
    (x,) = Block(arg_types=[V3]).args
    op = StopGradientOp.create(operands=[x], result_types=[TensorType(f64, [4])])
    with pytest.raises(VerifyException, match="tensor<4xf64>"):
        op.verify()


def test_every_ad_op_has_both_rules() -> None:
    """`ad.forward` has none: the AD passes replace it by plain ops before they run
    (compiler/autodiff/forward_region.py)."""
    missing = [op.name for op in Ad.operations
               if op is not ForwardOp and (op not in VJP_RULES or op not in JVP_RULES)]
    assert not missing
    assert ForwardOp not in VJP_RULES and ForwardOp not in JVP_RULES


def test_reverse_mode_blocks_the_stopped_path() -> None:
    module = _module()
    AutodiffPass(func="f", cotangents=(0,)).apply(make_context(), module)
    vjp = _function(module, "f_vjp")
    vjp.verify()
    # the adjoint of x * c with c = x held constant is ct * x, not 2 * ct * x
    exe = compile_function(module, "f_vjp")
    x, ct = np.array([1.0, -2.0, 3.0]), np.array([0.5, 1.0, 2.0])
    y, y_again, grad = exe.run([x, ct])
    np.testing.assert_allclose(y, x * x)
    np.testing.assert_allclose(y_again, x)
    np.testing.assert_allclose(grad, ct * x)


def test_forward_mode_gives_the_unstopped_part() -> None:
    module = _module()
    JvpPass(func="f").apply(make_context(), module)
    exe = compile_function(module, "f_jvp")
    x, t = np.array([1.0, -2.0, 3.0]), np.array([1.0, 1.0, -1.0])
    y, y_again, ty, ty_again = exe.run([x, t])
    np.testing.assert_allclose(y, x * x)
    np.testing.assert_allclose(ty, t * x)
    np.testing.assert_allclose(ty_again, t)


def test_a_function_of_only_stopped_values_has_no_gradient() -> None:
    block = Block(arg_types=[V3])
    op = StopGradientOp(block.args[0])
    total = A.ReduceSumOp(op, [0])
    block.add_ops([op, total, func.ReturnOp(total)])
    module = ModuleOp([func.FuncOp("h", ([V3], [total.result.type]), Region(block))])
    AutodiffPass(func="h", seed=True).apply(make_context(), module)
    vjp = _function(module, "h_vjp")
    assert len(vjp.function_type.outputs) == 1  # the value only: no gradient result


def test_lowering_removes_stop_gradient() -> None:
    module = _module()
    ConvertArrayToLoopsPass(function="f").apply(make_context(), module)
    assert "ad.stop_gradient" not in str(module)
    module.verify()
