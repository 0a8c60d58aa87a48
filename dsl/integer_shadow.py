"""Float64 shadows: how integer inputs that are differentiated carry a derivative.

An integer array passed to a derivative API keeps its dtype in the trace: the user's
function sees an int64 array, indexes with it, compares it, counts with it, exactly as
numpy would. Its derivative is the float64 derivative through numpy's conversion, so
the trace keeps, next to each integer value computed from such an input, a float64
*shadow* holding the same numbers:

* the input arrives as float64 and is converted to int64 once; that float64 input is
  the shadow of the int64 value;
* an op with an int64 result and a shadowed operand gets a float64 twin, computed from
  the operands' shadows (other integer operands are converted; index operands stay);
* where a shadowed integer meets floating-point arithmetic (numpy's conversion, an
  `array.convert` to a float type), the shadow is used instead, so the derivative
  flows to the input;
* an output with a shadow is returned as its shadow (float64).

Uses as indices, comparisons and masks read the int64 value and carry no derivative,
so an input used only that way gets none. Shadows cost nothing in value mode, where
integer inputs are not differentiated and so have none; twins that nothing reads are
removed by dead-code elimination.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdsl.dialects.builtin import IntegerType, TensorType, f64, i64
from xdsl.ir import BlockArgument, Operation, SSAValue

from pullback.compiler.dialects import array as ad

if TYPE_CHECKING:
    from pullback.dsl.trace import Trace
    from pullback.dsl.tracer import Tracer

MAX_EXACT = 2 ** 53
"""Integers up to this magnitude are exact in float64, the type their shadows have."""


def _is_int64(value: SSAValue) -> bool:
    t = value.type
    return (isinstance(t, TensorType) and isinstance(t.element_type, IntegerType)
            and t.element_type.width.data == 64)


def _index_operands(op: Operation) -> tuple[SSAValue, ...]:
    """Operands read as positions, not as numbers: never converted, never shadowed."""
    if isinstance(op, ad.TakeOp | ad.ScatterAddOp):
        return (op.indices,)
    return ()


def redirect(trace: Trace, op: Operation) -> Tracer | None:
    """For a conversion of a shadowed integer to a float type: the shadow (converted to
    that float type), to be used instead of `op`; None for any other op."""
    if not (isinstance(op, ad.ConvertOp) and _is_int64(op.operand)):
        return None
    shadow = trace.shadows.get(op.operand)
    if shadow is None or isinstance(op.result.type.element_type, IntegerType):
        return None
    from pullback.dsl.tracer import Tracer

    if op.result.type.element_type == f64:
        return Tracer(trace, shadow)
    return trace.emit(ad.ConvertOp(shadow, op.result.type.element_type))


def follow(trace: Trace, op: Operation) -> None:
    """After `op` was emitted: give its int64 result a float64 twin when an operand has
    a shadow (ops with regions keep integer results without one)."""
    if op.regions or len(op.results) != 1 or not _is_int64(op.results[0]):
        return
    indices = _index_operands(op)
    if not any(v in trace.shadows for v in op.operands if v not in indices):
        return
    operands = [v if v in indices or not _is_int64(v) else _float(trace, v)
                for v in op.operands]
    result = op.results[0].type
    assert isinstance(result, TensorType)
    twin = type(op).create(operands=operands, result_types=[TensorType(f64, result.get_shape())],
                           properties=dict(op.properties), attributes=dict(op.attributes))
    trace.shadows[op.results[0]] = trace.emit(twin).value


def _float(trace: Trace, value: SSAValue) -> SSAValue:
    """The shadow of an int64 value, or its plain float64 conversion if it has none."""
    shadow = trace.shadows.get(value)
    if shadow is not None:
        return shadow
    return trace.emit(ad.ConvertOp(value, f64)).value


def shadowed_input(trace: Trace, carrier: Tracer) -> Tracer:
    """The int64 value of a differentiated integer input arriving as float64 `carrier`;
    `carrier` becomes its shadow."""
    from pullback.dsl.tracer import Tracer

    value = trace.emit(ad.ConvertOp(carrier.value, i64)).value
    trace.shadows[value] = carrier.value
    return Tracer(trace, value)


def check_write(trace: Trace, value: SSAValue) -> None:
    """Refuse an in-place write into a differentiated integer input: it arrives as a
    float64 carrier, so the write could not reach the caller's array."""
    owner = value.owner
    if (value in trace.shadows and isinstance(owner, ad.ConvertOp)
            and isinstance(owner.operand, BlockArgument) and owner.operand.block is trace.block):
        raise NotImplementedError(
            "an integer array argument of a differentiated function cannot be written in "
            "place; write into a copy (x = x.copy()), or compile with mode=\"value\", where "
            "integer arguments are passed as they are")


def result(trace: Trace, value: SSAValue) -> SSAValue:
    """What the function returns for its output `value`: its shadow if it has one."""
    return trace.shadows.get(value, value)
