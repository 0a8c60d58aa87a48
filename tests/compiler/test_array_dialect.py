"""The `array` dialect: every op prints and parses back; verifiers name both shapes."""

from __future__ import annotations

import pytest
from op_table import TABLE, Case, OpRow, one_op_module
from xdsl.dialects.builtin import TensorType, f32, f64, i1, i64
from xdsl.ir import Block
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException

from pullback.compiler.context import make_context
from pullback.compiler.dialects import array as A

CASES = [(row, case) for row in TABLE for case in row.cases]
IDS = [f"{row.name}-{case.id}" for row, case in CASES]


@pytest.mark.parametrize(("row", "case"), CASES, ids=IDS)
@pytest.mark.parametrize("ft", [f64, f32], ids=["f64", "f32"])
def test_round_trip(row: OpRow, case: Case, ft) -> None:
    module = one_op_module(row, case, ft)
    module.verify()
    text = str(module)
    assert row.op.name in text
    parsed = Parser(make_context(), text).parse_module()
    parsed.verify()
    assert parsed.is_structurally_equivalent(module)


def _values(*types: TensorType):
    return Block(arg_types=types).args


def _raises(op, *fragments: str) -> None:
    with pytest.raises(VerifyException) as info:
        op.verify()
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_elementwise_operands_must_match() -> None:
    a, b = _values(TensorType(f64, [2, 3]), TensorType(f64, [3, 2]))
    _raises(A.AddOp.create(operands=[a, b], result_types=[a.type]), "2x3", "3x2")


def test_broadcast_bad_target() -> None:
    (a,) = _values(TensorType(f64, [2, 3]))
    _raises(A.BroadcastOp(a, [3, 3]), "(2, 3)", "(3, 3)")


def test_reshape_bad_size() -> None:
    (a,) = _values(TensorType(f64, [2, 3]))
    _raises(A.ReshapeOp(a, [4, 2]), "(2, 3)", "(4, 2)")


def test_matmul_bad_inner_dims() -> None:
    a, b = _values(TensorType(f64, [2, 3]), TensorType(f64, [4, 5]))
    op = A.MatmulOp.create(operands=[a, b], result_types=[TensorType(f64, [2, 5])])
    _raises(op, "(2, 3)", "(4, 5)")


def test_reduce_bad_result() -> None:
    (a,) = _values(TensorType(f64, [2, 3]))
    op = A.ReduceSumOp.create(operands=[a], result_types=[TensorType(f64, [3])],
                              properties={"axes": A.i64_array([1])})
    _raises(op, "tensor<2x3xf64>", "tensor<3xf64>")


def test_slice_out_of_bounds() -> None:
    (a,) = _values(TensorType(f64, [4]))
    _raises(A.SliceOp(a, [2], [2], [2]), "(4,)", "(2,)")


def test_select_condition_type() -> None:
    c, x = _values(TensorType(i1, [3]), TensorType(f64, [2]))
    _raises(A.SelectOp(c, x, x), "tensor<2xi1>", "tensor<3xi1>")


def test_float_only_ops_reject_integers() -> None:
    (a,) = _values(TensorType(i64, [2]))
    _raises(A.ExpOp(a), "tensor<2xi64>")
