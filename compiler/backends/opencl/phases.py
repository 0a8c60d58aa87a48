"""Splits a kernel function's body into phases and recognises their parallel shape.

A phase is a run of top-level ops that must execute in one launch because SSA values
flow between them (a reduction loop and the store of its result). Cheap pure ops at
top level (constants, index arithmetic) are recomputed in every phase that uses them.
Between phases a launch boundary orders the memory effects.

Inside a phase the parallel structure is read from the contract's attributes:
`pullback.parallel` loops (perfectly nested, constant bounds) form a chain mapped to
the NDRange; a `pullback.reduction` loop below them may be split across a work-group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects.builtin import ArrayAttr, StringAttr
from xdsl.ir import Block, Operation

from pullback.compiler.backends.opencl.emit import has_writes
from pullback.compiler.backends.opencl.ops import CODE_FOR_OP

PARALLEL = "pullback.parallel"
REDUCTION = "pullback.reduction"


def is_scalar(op: Operation) -> bool:
    """A region-free op without memory effects (recomputing it is harmless)."""
    return isinstance(op, arith.ConstantOp) or type(op) in CODE_FOR_OP


def _cheap(op: Operation) -> bool:
    return is_scalar(op) or isinstance(op, memref.LoadOp | memref.CastOp)


def body_ops(block: Block) -> list[Operation]:
    ops = list(block.ops)
    return ops[:-1] if ops and isinstance(ops[-1], scf.YieldOp) else ops


def constant_int(value: object) -> int | None:
    owner = getattr(value, "owner", None)
    if isinstance(owner, arith.ConstantOp) and not isinstance(owner.value, ArrayAttr):
        data = getattr(owner.value, "value", None)
        if isinstance(getattr(data, "data", None), int):
            return int(data.data)  # type: ignore[union-attr]
    return None


def trip_count(loop: scf.ForOp) -> int | None:
    """Iterations of a loop with constant bounds and positive step, else None."""
    lb, ub, step = constant_int(loop.lb), constant_int(loop.ub), constant_int(loop.step)
    if lb is None or ub is None or step is None or step <= 0:
        return None
    return max(0, -(-(ub - lb) // step))


def is_parallel_loop(op: Operation) -> bool:
    return (isinstance(op, scf.ForOp) and PARALLEL in op.attributes and not op.iter_args
            and trip_count(op) is not None)


def combiners(op: Operation) -> list[str] | None:
    """The combiners of a splittable reduction loop, or None."""
    if not isinstance(op, scf.ForOp) or trip_count(op) is None:
        return None
    attr = op.attributes.get(REDUCTION)
    if not isinstance(attr, ArrayAttr) or len(attr.data) != len(op.iter_args):
        return None
    names = [a.data for a in attr.data if isinstance(a, StringAttr)]
    if len(names) != len(op.iter_args) or any(n not in ("add", "mul", "max", "min")
                                              for n in names):
        return None
    if not op.iter_args or any(has_writes(o) for o in body_ops(op.body.block)):
        return None
    return names


@dataclass
class Phase:
    """Top-level ops run by one launch, and the recomputed scalar ops they need."""

    ops: list[Operation]
    recompute: list[Operation] = field(default_factory=list)
    chain: list[scf.ForOp] = field(default_factory=list)
    head: list[Operation] = field(default_factory=list)

    @property
    def parallel_extent(self) -> int:
        n = 1
        for loop in self.chain:
            n *= trip_count(loop) or 0
        return n

    def inner_ops(self) -> list[Operation]:
        """Ops run per parallel iteration: the innermost chain body, or the phase."""
        return body_ops(self.chain[-1].body.block) if self.chain else self.ops

    def split_point(self) -> tuple[list[Operation], scf.ForOp, list[Operation]] | None:
        """(pre, reduction loop, post) when the inner ops start with a splittable reduction."""
        ops = self.inner_ops()
        for i, op in enumerate(ops):
            if combiners(op) is not None:
                assert isinstance(op, scf.ForOp)
                return ops[:i], op, ops[i + 1:]
            if not _cheap(op):
                return None
        return None


def split_phases(block: Block) -> list[Phase]:
    """The phases of a kernel function body, in program order."""
    ops = [op for op in block.ops if not isinstance(op, func.ReturnOp)]
    scalar: set[Operation] = set()
    effects: list[Operation] = []
    for op in ops:
        if is_scalar(op) and all(v.owner in scalar or isinstance(v.owner, Block)
                                 for v in op.operands):
            scalar.add(op)
        else:
            effects.append(op)
    index = {op: i for i, op in enumerate(effects)}
    joined = [False] * len(effects)  # joined[j]: effect j continues the phase of j - 1
    for j, op in enumerate(effects):
        for inner in op.walk():
            for v in inner.operands:
                i = index.get(v.owner)  # type: ignore[arg-type]
                if i is not None and i < j:
                    for k in range(i + 1, j + 1):
                        joined[k] = True
    phases: list[Phase] = []
    for j, op in enumerate(effects):
        if j == 0 or not joined[j]:
            phases.append(Phase([]))
        phases[-1].ops.append(op)
    for phase in phases:
        phase.recompute = _needed(phase.ops, scalar, ops)
        _find_chain(phase)
    return phases


def _needed(phase_ops: list[Operation], scalar: set[Operation],
            order: list[Operation]) -> list[Operation]:
    need: set[Operation] = set()
    stack = [v.owner for op in phase_ops for inner in op.walk() for v in inner.operands]
    while stack:
        owner = stack.pop()
        if owner in scalar and owner not in need:
            assert isinstance(owner, Operation)
            need.add(owner)
            stack.extend(v.owner for v in owner.operands)
    return [op for op in order if op in need and not isinstance(op, arith.ConstantOp)]


def _find_chain(phase: Phase) -> None:
    *head, last = phase.ops
    if not is_parallel_loop(last) or any(not _cheap(op) for op in head):
        return
    phase.head = head
    loop: Operation = last
    while True:
        assert isinstance(loop, scf.ForOp)
        phase.chain.append(loop)
        rest = [op for op in body_ops(loop.body.block) if not _cheap(op)]
        if len(rest) != 1 or not is_parallel_loop(rest[0]):
            return
        loop = rest[0]
