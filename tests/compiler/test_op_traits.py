"""Op traits: float-only verification, the combiner table, and canonicalization patterns
reached through the ops' traits by both `simplify` and xDSL's `canonicalize`."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import IndexType, ModuleOp, TensorType, f32, f64, i1, i64
from xdsl.ir import Block, Region
from xdsl.transforms.canonicalize import CanonicalizePass
from xdsl.utils.exceptions import VerifyException

from pullback.compiler.context import make_context
from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.combiners import COMBINERS
from pullback.compiler.dialects.traits import Expensive, FloatOnly, combiner_of, has
from pullback.compiler.transforms.simplify import SimplifyPass

V3 = TensorType(f64, [3])
NUMPY_COMBINE = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


@pytest.mark.parametrize("op", [A.ExpOp, A.SqrtOp, A.TanhOp])
def test_float_only_unary_refuses_integers(op: type[A.UnaryOp]) -> None:
    (x,) = Block(arg_types=[TensorType(i64, [2])]).args
    with pytest.raises(VerifyException, match=f"'{op.name}' needs a floating point tensor, "
                                              r"got tensor<2xi64>"):
        op(x).verify()


def test_float_only_binary_refuses_integers() -> None:
    block = Block(arg_types=[TensorType(i64, [2])] * 2)
    with pytest.raises(VerifyException, match="'array.div' needs a floating point tensor"):
        A.DivOp(*block.args).verify()
    A.AddOp(*block.args).verify()  # integer addition is fine


def test_float_only_and_expensive_are_stated_on_the_classes() -> None:
    assert has(A.ExpOp, FloatOnly) and has(A.ExpOp, Expensive)
    assert not has(A.AddOp, FloatOnly) and not has(A.AddOp, Expensive)
    assert not has(A.NegOp, FloatOnly)


@pytest.mark.parametrize("name", sorted(COMBINERS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_identity_leaves_every_value_unchanged(name: str, dtype: type) -> None:
    """combine(identity, x) == x, by numpy, for ordinary and extreme values."""
    el = {np.float64: f64, np.float32: f32, np.int64: i64}[dtype]
    if dtype is np.int64:
        info = np.iinfo(np.int64)
        xs = np.array([info.min, -3, 0, 5, info.max], dtype=dtype)
    else:
        xs = np.array([-np.inf, -2.5, -0.0, 0.0, 1e-30, 7.0, np.inf], dtype=dtype)
    identity = np.asarray(COMBINERS[name].identity(el), dtype=dtype)
    np.testing.assert_array_equal(NUMPY_COMBINE[name](identity, xs), xs)


def test_integer_identities_follow_the_width() -> None:
    assert COMBINERS["max"].identity(IndexType()) == -(2**63)
    assert COMBINERS["min"].identity(i64) == 2**63 - 1
    assert (COMBINERS["max"].identity(i1), COMBINERS["min"].identity(i1)) == (0, 1)


def test_reductions_scans_and_scatters_name_their_combiner() -> None:
    assert [combiner_of(op).name for op in (A.ReduceSumOp, A.ReduceProdOp, A.ReduceMaxOp,
                                            A.ReduceMinOp, A.CumsumOp, A.ScatterAddOp)] == [
        "add", "mul", "max", "min", "add", "add"]
    with pytest.raises(TypeError, match="'array.add' accumulates with no combiner"):
        combiner_of(A.AddOp)


def _double_negation() -> ModuleOp:
    block = Block(arg_types=[V3])
    inner = A.NegOp(block.args[0])
    outer = A.NegOp(inner)
    block.add_ops([inner, outer, func.ReturnOp(outer)])
    return ModuleOp([func.FuncOp("f", ([V3], [V3]), Region(block))])


@pytest.mark.parametrize("cleanup", [SimplifyPass(), CanonicalizePass()],
                         ids=["simplify", "canonicalize"])
def test_op_patterns_apply_through_the_trait(cleanup: SimplifyPass | CanonicalizePass) -> None:
    """neg(neg(x)) -> x, found by both passes on the op's ArrayCanonicalization trait."""
    module = _double_negation()
    cleanup.apply(make_context(), module)
    fn = next(iter(module.ops))
    assert isinstance(fn, func.FuncOp)
    ops = list(fn.body.block.ops)
    assert len(ops) == 1 and isinstance(ops[0], func.ReturnOp)
    assert ops[0].operands[0] is fn.body.block.args[0]
