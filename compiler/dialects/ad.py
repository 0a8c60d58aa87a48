"""The `ad` dialect: markers that steer differentiation and vanish before lowering.

`ad.stop_gradient` passes its operand through unchanged and blocks every derivative
through it: its VJP and JVP are zero. The tracer emits it for `pb.ignore_derivatives`;
the lowering to loops replaces it by its operand, so backends never see it.
"""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Dialect, Operation, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    VarConstraint,
    base,
    irdl_op_definition,
    operand_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure


@irdl_op_definition
class StopGradientOp(IRDLOperation):
    """The operand itself, with zero derivative (a constant as far as AD is concerned)."""

    name = "ad.stop_gradient"
    T: ClassVar = VarConstraint("T", base(TensorType))
    operand = operand_def(T)
    result = result_def(T)
    traits = traits_def(Pure())
    assembly_format = "$operand attr-dict `:` type($result)"

    def __init__(self, operand: SSAValue | Operation):
        operand = SSAValue.get(operand)
        super().__init__(operands=[operand], result_types=[operand.type])


Ad = Dialect("ad", [StopGradientOp], [])
