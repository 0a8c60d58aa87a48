"""Where each `array.assign` writes: in place, by the kernel computing the value, or by a copy.

An assign's semantics are "when the function returns, the argument's buffer holds the
value"; every read of the argument sees the value it was called with. The lowering
writes in place (the value's home *is* the argument's buffer, so no temporary and no
copy) when that cannot be observed:

* the value is computed by a kernel step (a fused kernel, special op or matrix
  product, not a host call) and is neither a function result nor an argument;
* no later step reads the argument, and the argument is not returned as a result;
* if that kernel itself reads the argument, the kernel is fused, stores the value (not
  a reduction result) and reads the argument only at the element it computes; the
  store then comes after every load of the iteration (`late` of its `kernel.fused`),
  so each element is read before it is overwritten.

Otherwise the value is copied into the argument after every step (and after the
copies of returned arguments). An assigned value that is itself an argument assigned
elsewhere (a swap) is first copied aside, before any step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from xdsl.dialects import func
from xdsl.ir import BlockArgument, Operation, SSAValue

from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.ad import CallbackGradOp


class Step(Protocol):
    """A step of the schedule as the write plan sees it."""

    op: Operation
    reads: list[SSAValue]
    outputs: list[SSAValue]
    stores: list[SSAValue]
    fused: bool
    late: set[SSAValue]

    def element_reads(self) -> dict[SSAValue, bool]:
        """The values a fused step reads, and whether each only at the element it computes."""
        ...


@dataclass
class WritePlan:
    """How the assigns of one function are carried out.

    Attributes:
        in_place: values whose home is the buffer of the argument (by index) they are
            assigned to.
        copies: (value, argument index) written by a copy after every step.
        staged: arguments assigned elsewhere whose old value some copy needs; they are
            copied aside before any step.
    """

    in_place: dict[SSAValue, int] = field(default_factory=dict[SSAValue, int])
    copies: list[tuple[SSAValue, int]] = field(default_factory=list[tuple[SSAValue, int]])
    staged: list[SSAValue] = field(default_factory=list[SSAValue])


def plan_writes(function: func.FuncOp, steps: Sequence[Step], outputs: list[SSAValue]
                ) -> WritePlan:
    """Decide, for every `array.assign` of `function` (scheduled as `steps`), how it
    writes; marks the stores a step must write late (`Step.late`)."""
    assigns = [op for op in function.body.block.ops if isinstance(op, A.AssignOp)]
    targets = {op.target for op in assigns}
    producer = {v: k for k, step in enumerate(steps) for v in step.outputs}
    out = WritePlan()
    for op in assigns:
        target, value = op.target, op.value
        assert isinstance(target, BlockArgument)
        k = producer.get(value)
        if (value not in out.in_place and value not in outputs and target not in outputs
                and k is not None and _legal(steps, k, value, target)):
            out.in_place[value] = target.index
            steps[k].late.add(value)
            continue
        out.copies.append((value, target.index))
        if value in targets and value not in out.staged:
            out.staged.append(value)
    return out


def _legal(steps: Sequence[Step], k: int, value: SSAValue, target: SSAValue) -> bool:
    """Whether step `k` may write `value` straight into `target`'s buffer."""
    step = steps[k]
    if isinstance(step.op, CallbackGradOp):
        return False
    if any(target in other.reads for other in steps[k + 1:]):
        return False
    if target not in step.reads:
        return True
    if not step.fused or value not in step.stores:
        return False
    return step.element_reads().get(target, False)
