"""Producer-consumer fusion: which array values get a buffer, which are recomputed.

Elementwise ops, broadcasts, reshapes, transposes, slices, takes and splat constants
are *fusible*: a consumer recomputes one of their elements wherever it needs it, so a
chain of them costs one loop and no intermediate memory. Every other op (reductions,
scans, matrix products, concatenation, slice updates, scatters, literal arrays) is a
*root*: its result is materialized by one kernel, and its operands are fused into
that kernel's loops.

A fusible value is materialized too when it is returned, when a matrix product
reads it (through a transpose of the last two dimensions, its operand instead), or
when recomputing it would cost more than storing it: `cost * (reads - 1) >= 3`,
where `reads` counts how many times consumers sweep over it (a broadcast to k times
the size counts k) and `cost` is the scalar work per element of its fused expression.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.dialects import func
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue

from pullback.compiler.conversion.kernel_writer import size_of
from pullback.compiler.conversion.scalar_ops import SCALAR_RULES
from pullback.compiler.dialects import array as A

INDEX_MAP_OPS: tuple[type[Operation], ...] = (
    A.BroadcastOp, A.ReshapeOp, A.TransposeOp, A.SliceOp, A.TakeOp,
)
RECOMPUTE_THRESHOLD = 3
# Ops costing several simple ops per element when recomputed.
EXPENSIVE_OPS: frozenset[type[Operation]] = frozenset({
    A.ExpOp, A.LogOp, A.Log1pOp, A.Expm1Op, A.SinOp, A.CosOp, A.TanOp, A.TanhOp,
    A.SinhOp, A.CoshOp, A.ArcsinOp, A.ArccosOp, A.ArctanOp, A.PowOp, A.Arctan2Op,
    A.DivOp, A.SqrtOp,
})
_COST_CAP = 1000


def is_fusible(op: Operation) -> bool:
    """Whether a consumer may recompute elements of `op` inside its own loops."""
    if type(op) in SCALAR_RULES or isinstance(op, (*INDEX_MAP_OPS, A.FullOp)):
        return True
    return isinstance(op, A.ConstantOp) and op.value.is_splat()


def is_matmul_transpose(value: SSAValue) -> bool:
    """Whether `value` swaps the last two dimensions of an op result (a foldable flag)."""
    op = value.owner
    if not isinstance(op, A.TransposeOp):
        return False
    r = len(op.perm)
    return r >= 2 and op.perm == (*range(r - 2), r - 1, r - 2)


def _own_cost(op: Operation) -> int:
    if isinstance(op, (*INDEX_MAP_OPS, A.FullOp, A.ConstantOp)):
        return 0
    return 8 if type(op) in EXPENSIVE_OPS else 1


@dataclass
class FusionPlan:
    """The result of fusion: materialized values and the root ops in program order."""

    function: func.FuncOp
    materialized: set[SSAValue] = field(default_factory=set[SSAValue])
    roots: list[Operation] = field(default_factory=list[Operation])

    def leaves(self, values: list[SSAValue]) -> list[SSAValue]:
        """The materialized values that computing `values` element-wise reads."""
        seen: set[SSAValue] = set()
        out: list[SSAValue] = []
        stack = list(reversed(values))
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in self.materialized:
                out.append(v)
            else:
                stack.extend(reversed(v.owner.operands))  # type: ignore[union-attr]
        return out


def plan_fusion(function: func.FuncOp) -> FusionPlan:
    """Decide buffers and kernels for an array-level function."""
    plan = FusionPlan(function)
    body = list(function.body.block.ops)
    plan.materialized.update(function.body.block.args)
    for op in body:
        if isinstance(op, func.ReturnOp):
            plan.materialized.update(op.operands)
        elif not is_fusible(op):
            plan.materialized.update(op.results)
        if isinstance(op, A.MatmulOp):
            for v in (op.lhs, op.rhs):
                plan.materialized.add(v.owner.operand if is_matmul_transpose(v) else v)
    _materialize_costly(plan, body)
    plan.roots = [op for op in body if op.results and op.results[0] in plan.materialized]
    return plan


def _materialize_costly(plan: FusionPlan, body: list[Operation]) -> None:
    cost: dict[SSAValue, int] = {}
    for op in body:
        if op.results:
            inner = sum(cost.get(v, 0) for v in set(op.operands) if v not in plan.materialized)
            cost[op.results[0]] = min(_COST_CAP, _own_cost(op) + inner)
    reads: dict[SSAValue, float] = {}
    for op in reversed(body):
        if not op.results:
            continue
        v = op.results[0]
        sweeps = 1.0 if v in plan.materialized else reads.get(v, 0.0)
        if v not in plan.materialized and is_fusible(op):
            if cost[v] * (sweeps - 1) >= RECOMPUTE_THRESHOLD:
                plan.materialized.add(v)
                sweeps = 1.0
        out_size = size_of(A.shape_of(v))
        for operand in set(op.operands):
            if isinstance(operand.type, TensorType):
                factor = max(1.0, out_size / max(1, size_of(A.shape_of(operand))))
                reads[operand] = reads.get(operand, 0.0) + sweeps * factor
