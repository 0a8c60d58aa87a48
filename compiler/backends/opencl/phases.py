"""Splits a kernel function's body into phases and recognises their parallel shape.

A phase is a run of top-level ops that must execute in one launch because SSA values
flow between them (a reduction loop and the store of its result). Cheap pure ops at
top level (constants, index arithmetic) are recomputed in every phase that uses them.
Between phases a launch boundary orders the memory effects.

Inside a phase the parallel structure is read from the kernel-level IR: the
induction variables of a last `scf.parallel` without reduced values (constant bounds)
are the NDRange's dimensions; a reducing `scf.parallel` in its body (or alone) may be
split across a work-group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects.builtin import ArrayAttr
from xdsl.ir import Block, Operation, SSAValue

from pullback.compiler.backends.opencl.emit import has_writes
from pullback.compiler.backends.opencl.ops import CODE_FOR_OP


def is_scalar(op: Operation) -> bool:
    """A region-free op without memory effects (recomputing it is harmless)."""
    return isinstance(op, arith.ConstantOp) or type(op) in CODE_FOR_OP


def _cheap(op: Operation) -> bool:
    return is_scalar(op) or isinstance(op, memref.LoadOp | memref.CastOp)


def body_ops(block: Block) -> list[Operation]:
    """The ops of a loop body but its terminator (`scf.yield` or `scf.reduce`)."""
    ops = list(block.ops)
    return ops[:-1] if ops and isinstance(ops[-1], scf.YieldOp | scf.ReduceOp) else ops


def constant_int(value: object) -> int | None:
    owner = getattr(value, "owner", None)
    if isinstance(owner, arith.ConstantOp) and not isinstance(owner.value, ArrayAttr):
        data = getattr(owner.value, "value", None)
        if isinstance(getattr(data, "data", None), int):
            return int(data.data)  # type: ignore[union-attr]
    return None


@dataclass(frozen=True)
class Dim:
    """One dimension of an `scf.parallel`: its induction variable and constant bounds."""

    iv: SSAValue
    lower: SSAValue
    step: SSAValue
    trip: int


def dims(op: scf.ParallelOp) -> list[Dim] | None:
    """The dimensions of `op`, or None unless its bounds are constant, steps positive."""
    out = []
    for iv, lb, ub, st in zip(op.body.block.args, op.lowerBound, op.upperBound, op.step,
                              strict=True):
        lo, hi, step = constant_int(lb), constant_int(ub), constant_int(st)
        if lo is None or hi is None or step is None or step <= 0:
            return None
        out.append(Dim(iv, lb, st, max(0, -(-(hi - lo) // step))))
    return out


def is_parallel_loop(op: Operation) -> bool:
    """An `scf.parallel` without reduced values and with constant bounds."""
    return isinstance(op, scf.ParallelOp) and not op.initVals and dims(op) is not None


def is_splittable(op: Operation) -> bool:
    """A reducing `scf.parallel` with constant bounds whose body writes no memory: its
    iterations may be shared by a work-group, each partial starting from the init
    values (the combiners' identities)."""
    return (isinstance(op, scf.ParallelOp) and bool(op.initVals) and dims(op) is not None
            and not any(has_writes(o) for o in body_ops(op.body.block)))


@dataclass
class Phase:
    """Top-level ops run by one launch, and the recomputed scalar ops they need."""

    ops: list[Operation]
    recompute: list[Operation] = field(default_factory=list)
    grid: scf.ParallelOp | None = None
    """The `scf.parallel` whose dimensions are the NDRange's (after `head`)."""
    head: list[Operation] = field(default_factory=list)

    @property
    def dims(self) -> list[Dim]:
        """The dimensions of the NDRange, outermost first."""
        return (dims(self.grid) or []) if self.grid else []

    @property
    def parallel_extent(self) -> int:
        n = 1
        for d in self.dims:
            n *= d.trip
        return n

    def inner_ops(self) -> list[Operation]:
        """Ops run per parallel iteration: the grid's body, or the phase."""
        return body_ops(self.grid.body.block) if self.grid else self.ops

    def split_point(self) -> tuple[list[Operation], scf.ParallelOp, list[Operation]] | None:
        """(pre, reduction, post) when the inner ops start with a splittable reduction."""
        ops = self.inner_ops()
        for i, op in enumerate(ops):
            if is_splittable(op):
                assert isinstance(op, scf.ParallelOp)
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
        *head, last = phase.ops
        if is_parallel_loop(last) and all(_cheap(op) for op in head):
            assert isinstance(last, scf.ParallelOp)
            phase.grid, phase.head = last, head
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

