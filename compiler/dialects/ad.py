"""The `ad` dialect: markers that steer differentiation and vanish before lowering.

`ad.stop_gradient` passes its operand through unchanged and blocks every derivative
through it: its VJP and JVP are zero. The tracer emits it for `pb.ignore_derivatives`;
the lowering to loops replaces it by its operand, so backends never see it.

Host callbacks (`pb.showgrad`, `pb.hook`) are explicit ops:
* `ad.callback` marks a use of a value in the primal; it is the identity. Its VJP
  emits `ad.callback_grad` on the cotangent of that use.
* `ad.callback_grad` is the host call of the backward pass: Python receives the
  gradient and returns the gradient that flows on (for `showgrad` the same one).
  With `unreached`, the use received no gradient: Python is told so (its operand is
  a placeholder zero) and the result is unused. It lowers to a host call step.
* `ad.hook` is a hook compiled into the backward pass: its region maps the
  cotangent (block argument) to the gradient that flows on (`ad.yield`).
* kind `eager_update` (`pb.eager_update` with a Python update function) hands a
  parameter's complete gradient to the host, which updates the parameter in place;
  no gradient flows on, and an unreached use still calls the host (marked
  `unreached`) so that it knows.

`ad.eager_update` (`pb.eager_update` with `pb.optimisers.update`) is the compiled
form: a region holding the optimiser step of one parameter, inlined into the backward
pass where the parameter's gradient is complete, whose results are written to the
parameter and its optimiser state in place (`array.assign`).

Every callback op names its host function by `slot` in a callback table: the table
is a function argument (`tensor<i64>` holding a token the runtime registers), so
compiled code is shared by every trace of the same program, and each call binds the
functions of its own trace. `kind` and `label` say what the callback is, for readers.

`ad.checkpoint` (`pb.checkpointed`) is a region computed from its operands alone (the
region's arguments; it reads nothing from outside) whose `ad.yield` gives its result.
Its VJP saves only the operands and recomputes the region in the backward pass; after
differentiation the region is inlined into plain ops.

`ad.forward` (`pb.forwarddiff`) is a region computed from its operands alone: the
first operand is the input `x` the region is differentiated by, in forward mode, the
others are values it closes over, which get no derivative through it. Its `ad.yield`
gives its one result. `chunk` is the most tangent directions one forward pass carries.
The `expand-forward` pass (`compiler/autodiff/forward_region.py`) replaces it by plain
ops before differentiation: its value plus a zero term whose derivative is the
Jacobian the chunked forward passes compute.

`ad.reverse_begin` (no operands, no results) marks where the reverse sweep of a
function built by `autodiff` begins: the ops before it compute the primal, the ops
after it the adjoints. A function has at most one. It has no memory-effect trait,
so the cleanup passes, which erase only ops known to be free of effects, keep it
(and none of them reorders ops); the lowering to loops drops it once it has noted
which values the forward part computes (`transforms.memory_kinds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects import func
from xdsl.dialects.builtin import I64, IntegerAttr, StringAttr, TensorType, UnitAttr, i64
from xdsl.ir import Block, Dialect, Operation, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    VarConstraint,
    base,
    irdl_op_definition,
    lazy_traits_def,
    operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import (
    HasParent,
    IsolatedFromAbove,
    IsTerminator,
    Pure,
    RecursiveMemoryEffect,
)
from xdsl.utils.exceptions import VerifyException

CALLBACK_KINDS = ("showgrad", "hook", "eager_update")

FORWARDDIFF_MARK = "pullback.forwarddiff"
"""Unit attribute on two ops of an expanded `ad.forward` (`expand-forward`): the
`ad.stop_gradient` of its input and the `array.add` of its value and the zero derivative
term. The region's Jacobian is constant to any further differentiation (no second
order); once every AD pass has run, the add is replaced by its value operand
(`drop-derivative-terms`)."""


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


class _CallbackBase(IRDLOperation):
    """A value and the callback table: `slot`, `kind` and `label` name the host function."""

    T: ClassVar = VarConstraint("T", base(TensorType))
    operand = operand_def(T)
    table = operand_def(TensorType)
    result = result_def(T)
    slot = prop_def(IntegerAttr[I64])
    kind = prop_def(StringAttr)
    label = prop_def(StringAttr)

    def __init__(self, operand: SSAValue | Operation, table: SSAValue | Operation, slot: int,
                 kind: str, label: str, **properties: UnitAttr):
        operand = SSAValue.get(operand)
        super().__init__(
            operands=[operand, table], result_types=[operand.type],
            properties={"slot": IntegerAttr(slot, i64), "kind": StringAttr(kind),
                        "label": StringAttr(label), **properties})

    def verify_(self) -> None:
        t = self.table.type
        if not (isinstance(t, TensorType) and t.element_type == i64 and t.get_shape() == ()):
            raise VerifyException(f"{self.name}: the callback table must be tensor<i64>, got {t}")
        if self.kind.data not in CALLBACK_KINDS:
            raise VerifyException(
                f"{self.name}: kind must be one of {', '.join(CALLBACK_KINDS)}, "
                f"got '{self.kind.data}'")
        if self.slot.value.data < 0:
            raise VerifyException(f"{self.name}: slot must be >= 0, got {self.slot.value.data}")


@irdl_op_definition
class CallbackOp(_CallbackBase):
    """A use of a value watched by a host callback; the identity in the primal."""

    name = "ad.callback"
    assembly_format = (
        "$operand `,` $table `slot` $slot `kind` $kind `label` $label attr-dict "
        "`:` type($result) `,` type($table)")


@irdl_op_definition
class CallbackGradOp(_CallbackBase):
    """The host call of the backward pass: gradient in, gradient that flows on out."""

    name = "ad.callback_grad"
    unreached = opt_prop_def(UnitAttr)
    assembly_format = (
        "$operand `,` $table `slot` $slot `kind` $kind `label` $label "
        "(`unreached` $unreached^)? attr-dict `:` type($result) `,` type($table)")


@irdl_op_definition
class HookOp(IRDLOperation):
    """A hook compiled into the backward pass; the identity in the primal.

    The region's single argument is the cotangent of the result; the value it yields
    is the gradient passed on to the operand.
    """

    name = "ad.hook"
    T: ClassVar = VarConstraint("T", base(TensorType))
    operand = operand_def(T)
    result = result_def(T)
    body = region_def("single_block")
    traits = traits_def(RecursiveMemoryEffect())
    assembly_format = "$operand attr-dict `:` type($result) $body"

    def __init__(self, operand: SSAValue | Operation, body: Region):
        operand = SSAValue.get(operand)
        super().__init__(operands=[operand], result_types=[operand.type], regions=[body])

    def verify_(self) -> None:
        block = self.body.block
        t = self.result.type
        if len(block.args) != 1 or block.args[0].type != t:
            raise VerifyException(f"ad.hook: the region must take one argument of type {t}")
        last = block.last_op
        if not isinstance(last, YieldOp) or len(last.values) != 1 or last.values[0].type != t:
            raise VerifyException(f"ad.hook: the region must yield one value of type {t}")


@irdl_op_definition
class CheckpointOp(IRDLOperation):
    """A region whose intermediates the backward pass recomputes instead of keeping.

    The region takes one argument per operand (same types) and yields the result;
    it uses no value defined outside it (so `cse` never makes it read one).
    """

    name = "ad.checkpoint"
    inputs = var_operand_def()
    result = result_def(TensorType)
    body = region_def("single_block")
    traits = traits_def(RecursiveMemoryEffect(), IsolatedFromAbove())
    assembly_format = "`(` $inputs `)` attr-dict `:` functional-type($inputs, $result) $body"

    def __init__(self, inputs: Sequence[SSAValue | Operation], body: Region,
                 result_type: TensorType):
        super().__init__(operands=[[SSAValue.get(v) for v in inputs]],
                         result_types=[result_type], regions=[body])

    def verify_(self) -> None:
        block = self.body.block
        want = [v.type for v in self.inputs]
        got = [a.type for a in block.args]
        if got != want:
            raise VerifyException(
                f"ad.checkpoint: the region's argument types {got} must be the operand "
                f"types {want}")
        last = block.last_op
        t = self.result.type
        if not isinstance(last, YieldOp) or len(last.values) != 1 or last.values[0].type != t:
            raise VerifyException(f"ad.checkpoint: the region must yield one value of type {t}")


@irdl_op_definition
class ForwardOp(IRDLOperation):
    """A region differentiated in forward mode with respect to its first operand.

    The region takes one argument per operand (same types; the first is `x`, the
    rest are values it closes over) and yields the result; it uses no value defined
    outside it. `chunk` (>= 1) bounds the tangent directions per forward pass.
    """

    name = "ad.forward"
    x = operand_def(TensorType)
    captured = var_operand_def(TensorType)
    result = result_def(TensorType)
    chunk = prop_def(IntegerAttr[I64])
    body = region_def("single_block")
    traits = traits_def(RecursiveMemoryEffect(), IsolatedFromAbove())
    assembly_format = ("$x `(` $captured `)` `chunk` $chunk attr-dict `:` type($x) `,` "
                       "`(` type($captured) `)` `->` type($result) $body")

    def __init__(self, x: SSAValue | Operation, captured: Sequence[SSAValue | Operation],
                 body: Region, result_type: TensorType, chunk: int):
        super().__init__(operands=[SSAValue.get(x), [SSAValue.get(v) for v in captured]],
                         result_types=[result_type], regions=[body],
                         properties={"chunk": IntegerAttr(chunk, i64)})

    def verify_(self) -> None:
        if self.chunk.value.data < 1:
            raise VerifyException(f"ad.forward: chunk must be >= 1, got {self.chunk.value.data}")
        want = [self.x.type, *(v.type for v in self.captured)]
        got = [a.type for a in self.body.block.args]
        if got != want:
            raise VerifyException(
                f"ad.forward: the region's argument types {got} must be the operand "
                f"types {want}")
        last = self.body.block.last_op
        t = self.result.type
        if not isinstance(last, YieldOp) or len(last.values) != 1 or last.values[0].type != t:
            raise VerifyException(f"ad.forward: the region must yield one value of type {t}")


@irdl_op_definition
class YieldOp(IRDLOperation):
    """The value an `ad.hook`, `ad.checkpoint`, `ad.forward` or `ad.eager_update`
    region gives back."""

    name = "ad.yield"
    values = var_operand_def()
    traits = lazy_traits_def(
        lambda: (IsTerminator(), HasParent(HookOp, CheckpointOp, ForwardOp, EagerUpdateOp), Pure()))
    assembly_format = "$values attr-dict `:` type($values)"

    def __init__(self, *values: SSAValue | Operation):
        super().__init__(operands=[[SSAValue.get(v) for v in values]])


@irdl_op_definition
class ReverseBeginOp(IRDLOperation):
    """Where the reverse sweep begins: the primal before it, the adjoints after it."""

    name = "ad.reverse_begin"
    traits = traits_def(HasParent(func.FuncOp))
    assembly_format = "attr-dict"

    def __init__(self) -> None:
        super().__init__()

    def verify_(self) -> None:
        block = self.parent_block()
        count = 0 if block is None else sum(isinstance(op, ReverseBeginOp) for op in block.ops)
        if count > 1:
            raise VerifyException(
                f"ad.reverse_begin: a function has at most one, this one has {count}")


@irdl_op_definition
class EagerUpdateOp(IRDLOperation):
    """A parameter updated by a compiled optimiser step as soon as its gradient is complete.

    The identity on `param` in the forward pass. The region computes the step from
    its arguments `(param, grad, states...)` and yields `(new_param, new_states...)`
    (same types); it uses no value from outside. The VJP rule inlines the region where
    the parameter's cotangent is complete and assigns the results to `param` and
    `states`, which must be function arguments (`array.assign`); the parameter gets no
    gradient. A parameter no gradient reaches is not updated.
    """

    name = "ad.eager_update"
    T: ClassVar = VarConstraint("T", base(TensorType))
    param = operand_def(T)
    states = var_operand_def(TensorType)
    result = result_def(T)
    label = prop_def(StringAttr)
    body = region_def("single_block")
    traits = traits_def(RecursiveMemoryEffect(), IsolatedFromAbove())
    assembly_format = ("$param `(` $states `)` $label attr-dict `:` type($param) `,` "
                       "`(` type($states) `)` $body")

    def __init__(self, param: SSAValue | Operation, states: Sequence[SSAValue | Operation],
                 body: Region, label: str):
        param = SSAValue.get(param)
        super().__init__(operands=[param, [SSAValue.get(v) for v in states]],
                         result_types=[param.type], regions=[body],
                         properties={"label": StringAttr(label)})

    def verify_(self) -> None:
        t = self.param.type
        if self.result.type != t:
            raise VerifyException(f"ad.eager_update: the result type must be {t}")
        states = [v.type for v in self.states]
        want = [t, t, *states]
        got = [a.type for a in self.body.block.args]
        if got != want:
            raise VerifyException(
                f"ad.eager_update: the region's argument types {got} must be {want} "
                "(param, grad, states...)")
        last = self.body.block.last_op
        if not isinstance(last, YieldOp) or [v.type for v in last.values] != [t, *states]:
            raise VerifyException(
                f"ad.eager_update: the region must yield the new param and states, of types "
                f"{[t, *states]}")


def hook_region(argument_type: TensorType) -> tuple[Region, Block]:
    """An empty `ad.hook` body taking the cotangent; the caller fills it and yields."""
    block = Block(arg_types=[argument_type])
    return Region(block), block


Ad = Dialect("ad", [StopGradientOp, CallbackOp, CallbackGradOp, HookOp, CheckpointOp, ForwardOp,
                   YieldOp, ReverseBeginOp, EagerUpdateOp], [])
