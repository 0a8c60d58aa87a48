"""`ad.checkpoint`: round trip, verification, derivative rules against finite
differences (interpreter), the `checkpoint` pass, and the recomputation kept apart
from the forward computation through cleanup and lowering."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import check_jvp, check_vjp
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f64
from xdsl.ir import Block, Region
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException

from pullback.cli import main
from pullback.compiler.autodiff.checkpoint import RECOMPUTE_MARK, CheckpointPass
from pullback.compiler.autodiff.reverse import AutodiffPass
from pullback.compiler.backends.llvm import compile_function
from pullback.compiler.context import make_context
from pullback.compiler.conversion.array_to_loops import ConvertArrayToLoopsPass
from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.ad import CheckpointOp, YieldOp
from pullback.compiler.interpreter import evaluate_module
from pullback.compiler.passes import get_pass

V3 = TensorType(f64, [3])

MODULE = """
builtin.module {
  func.func @f(%x: tensor<3xf64>, %y: tensor<3xf64>) -> tensor<3xf64> {
    %r = ad.checkpoint(%x, %y) : (tensor<3xf64>, tensor<3xf64>) -> tensor<3xf64> {
    ^bb0(%a: tensor<3xf64>, %b: tensor<3xf64>):
      %t = array.mul %a, %b : tensor<3xf64>
      %u = array.tanh %t : tensor<3xf64>
      %n = ad.checkpoint(%u, %a) : (tensor<3xf64>, tensor<3xf64>) -> tensor<3xf64> {
      ^bb1(%c: tensor<3xf64>, %d: tensor<3xf64>):
        %s = array.sin %c : tensor<3xf64>
        %p = array.mul %s, %d : tensor<3xf64>
        ad.yield %p : tensor<3xf64>
      }
      ad.yield %n : tensor<3xf64>
    }
    %q = array.mul %r, %r : tensor<3xf64>
    func.return %q : tensor<3xf64>
  }
}
"""


def _parse(text: str = MODULE) -> ModuleOp:
    module = Parser(make_context(), text).parse_module()
    module.verify()
    return module


def _reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r = np.sin(np.tanh(x * y)) * x
    return r * r


ARGS = [np.array([0.3, -1.2, 0.7]), np.array([1.1, 0.4, -0.5])]


def test_round_trip() -> None:
    module = _parse()
    again = _parse(str(module))
    assert again.is_structurally_equivalent(module)
    assert str(module).count("ad.checkpoint") == 2


def test_interpreter_evaluates_the_region() -> None:
    (out,) = evaluate_module(_parse(), "f", ARGS)
    np.testing.assert_allclose(out, _reference(*ARGS), rtol=1e-14)


def test_region_types_must_match_the_operands() -> None:
    block = Block(arg_types=[TensorType(f64, [4])])
    block.add_op(YieldOp(block.args[0]))
    (x,) = Block(arg_types=[V3]).args
    op = CheckpointOp([x], Region(block), TensorType(f64, [4]))
    with pytest.raises(VerifyException, match="argument types"):
        op.verify()


def test_region_must_not_read_outside_values() -> None:
    outer = Block(arg_types=[V3])
    inner = Block(arg_types=[V3])
    prod = A.MulOp(inner.args[0], outer.args[0])
    inner.add_ops([prod, YieldOp(prod)])
    op = CheckpointOp([outer.args[0]], Region(inner), V3)
    outer.add_ops([op, func.ReturnOp(op)])
    with pytest.raises(VerifyException, match="IsolatedFromAbove"):
        op.verify()


def test_cse_keeps_the_region_isolated() -> None:
    """A constant in the region equal to one before it outside is not replaced by it."""
    module = _parse("""
builtin.module {
  func.func @f(%x: tensor<3xf64>) -> (tensor<3xf64>, tensor<3xf64>) {
    %c = array.full 1.500000e+00 : f64 : tensor<3xf64>
    %r = ad.checkpoint(%x) : (tensor<3xf64>) -> tensor<3xf64> {
    ^bb0(%a: tensor<3xf64>):
      %k = array.full 1.500000e+00 : f64 : tensor<3xf64>
      %t = array.mul %a, %k : tensor<3xf64>
      ad.yield %t : tensor<3xf64>
    }
    func.return %c, %r : tensor<3xf64>, tensor<3xf64>
  }
}""")
    get_pass("cse")().apply(make_context(), module)
    module.verify()
    assert str(module).count("array.full") == 2


def test_reverse_mode_matches_finite_differences() -> None:
    check_vjp(_parse(), "f", ARGS, np.random.default_rng(0))


def test_forward_mode_matches_finite_differences() -> None:
    check_jvp(_parse(), "f", ARGS, np.random.default_rng(1))


def test_checkpoint_pass_inlines_every_region() -> None:
    module = _parse()
    CheckpointPass().apply(make_context(), module)
    module.verify()
    assert "ad.checkpoint" not in str(module)
    (out,) = evaluate_module(module, "f", ARGS)
    np.testing.assert_allclose(out, _reference(*ARGS), rtol=1e-14)


def _differentiated() -> ModuleOp:
    module = _parse()
    ctx = make_context()
    AutodiffPass(func="f").apply(ctx, module)
    for name in ("simplify", "cse", "dce"):
        get_pass(name)().apply(ctx, module)
    return module


def test_backward_pass_recomputes_the_region() -> None:
    """The region's ops run once in the forward part (inside the regions, kept through
    cleanup) and once, marked, in the backward part; cse merges nothing across."""
    module = _differentiated()
    vjp = next(f for f in module.ops if isinstance(f, func.FuncOp) and f.sym_name.data == "f_vjp")
    top = list(vjp.body.block.ops)
    assert sum(isinstance(op, CheckpointOp) for op in top) == 1
    recomputed = [op for op in vjp.walk() if RECOMPUTE_MARK in op.attributes]
    assert sum(isinstance(op, A.TanhOp) for op in recomputed) == 1
    assert sum(isinstance(op, A.SinOp) for op in recomputed) >= 1
    CheckpointPass().apply(make_context(), module)
    get_pass("cse")().apply(make_context(), module)
    assert sum(isinstance(op, A.TanhOp) for op in vjp.walk()) == 2


def test_lowered_program_recomputes_and_keeps_no_intermediate() -> None:
    """After lowering, `tanh` is computed twice (forward kernel and backward kernel):
    the backward part does not read the forward part's `tanh`; the gradients are
    those of the chain rule."""
    module = _differentiated()
    ConvertArrayToLoopsPass(function="f_vjp").apply(make_context(), module)
    text = str(module)
    assert text.count("math.tanh") == 2
    exe = compile_function(_differentiated(), "f_vjp")
    x, y = ARGS
    ct = np.array([0.5, -1.0, 2.0])
    value, gx, gy = exe.run([x, y, ct])
    np.testing.assert_allclose(value, _reference(x, y), rtol=1e-14)
    r = np.sin(np.tanh(x * y)) * x
    dr = 2 * r * ct
    du = dr * x * np.cos(np.tanh(x * y))
    dt = du * (1 - np.tanh(x * y) ** 2)
    np.testing.assert_allclose(gx, dr * np.sin(np.tanh(x * y)) + dt * y, rtol=1e-13)
    np.testing.assert_allclose(gy, dt * x, rtol=1e-13)


def test_pullback_opt_runs_the_pass(tmp_path, capsys) -> None:
    path = tmp_path / "f.mlir"
    path.write_text(MODULE)
    assert main(["opt", str(path), "-p", "autodiff,inline-checkpoints,cse"]) == 0
    out = capsys.readouterr().out
    assert "ad.checkpoint" not in out and "f_vjp" in out
    assert RECOMPUTE_MARK in out


def test_vmap_batches_the_region() -> None:
    module = _parse()
    get_pass("vmap")(func="f", args=(0,), size=2).apply(make_context(), module)
    module.verify()
    xs = np.array([ARGS[0], ARGS[0][::-1]])
    (out,) = evaluate_module(module, "f_vmap", [xs, ARGS[1]])
    want = np.array([_reference(x, ARGS[1]) for x in xs])
    np.testing.assert_allclose(out, want, rtol=1e-14)
