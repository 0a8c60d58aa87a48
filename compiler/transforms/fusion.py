"""Multi-output loop fusion: which array values get a buffer, and which kernel computes them.

Elementwise ops, broadcasts, reshapes, transposes, slices, takes and splat constants
are *fusible*: a kernel computes their elements inside its own loops. Reductions
are fused too, as accumulators. Scans, concatenation, slice updates, scatters and
literal arrays are *special*: one kernel each. Matrix products are target calls.
Host calls (`ad.callback_grad`) are steps of their own: their operand is stored
before them and their result is read after them; they stay even when their result
is unused (they act on the host).

A value is *stored* (gets a buffer) when it is a function input or result, a
matrix-product operand, the result of a reduction or special op, or when
recomputing it where it is read would cost more than storing it: with `sweeps` the
number of times the kernels evaluate each of its elements (once per kernel and
access path; a broadcast to k times the size counts k) and `cost` the scalar work
per element of its fused expression, `cost * (sweeps - 1) >= 3`. Only values computed
by an elementwise op are stored this way (an index map stores its source instead),
and never values computed from constants alone, which the target folds.

Kernels are formed in program order. A *fused kernel* iterates over one domain (a
shape with its size-1 dimensions dropped). Each stored fusible value and each
reduction joins the earliest fused kernel of its domain that is legal: every stored
value it reads comes from an earlier kernel (or is an input), except a stored
elementwise value of that same kernel read at the same element, which it reuses as
a scalar; a reduction result is never read by its own kernel. Otherwise it opens a
new kernel. A reduction of a reduction with the same combiner reduces the inner
source directly, so it needs one pass over memory.

An `array.assign` makes its value stored. The value joins no kernel at or before
one that reads the assigned argument, so that the lowering can usually write it in
place (`conversion/in_place.py` decides, and keeps the order legal).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.dialects import func
from xdsl.dialects.builtin import TensorType
from xdsl.ir import BlockArgument, Operation, SSAValue

from pullback.compiler.conversion.kernel_writer import size_of
from pullback.compiler.conversion.scalar_ops import SCALAR_RULES
from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.ad import CallbackGradOp

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
_MAX_ROUNDS = 64


def is_fusible(op: Operation) -> bool:
    """Whether a kernel may compute elements of `op` inside its own loops."""
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


def squeeze(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape without its size-1 dimensions: the iteration domain of a fused kernel."""
    return tuple(d for d in shape if d != 1)


def is_identity_map(op: Operation) -> bool:
    """Whether index-map `op` reads element i of its operand for element i of its result."""
    src, dst = A.shape_of(op.operands[0]), A.shape_of(op.results[0])
    if squeeze(src) != squeeze(dst):
        return False
    match op:
        case A.BroadcastOp() | A.ReshapeOp():
            return True
        case A.TransposeOp():
            moved = [p for p in op.perm if src[p] != 1]
            return moved == sorted(moved)
        case A.SliceOp():
            return all(s == 0 for s in op.starts) and src == dst
        case _:
            return False


def _own_cost(op: Operation) -> int:
    if isinstance(op, (*INDEX_MAP_OPS, A.FullOp, A.ConstantOp)):
        return 0
    return 8 if type(op) in EXPENSIVE_OPS else 1


@dataclass(frozen=True)
class Reduction:
    """A reduction computed by a fused kernel: `op`'s result = reduce `source` over `axes`."""

    op: A.ReduceOp
    source: SSAValue
    axes: tuple[int, ...]


@dataclass
class Kernel:
    """One step of the schedule: a fused loop kernel, a special op, or a matrix product."""

    domain: tuple[int, ...] = ()
    stores: list[SSAValue] = field(default_factory=list[SSAValue])
    reductions: list[Reduction] = field(default_factory=list[Reduction])
    op: Operation | None = None
    reads: list[SSAValue] = field(default_factory=list[SSAValue])
    late: set[SSAValue] = field(default_factory=set[SSAValue])
    """Stores written after every load of the iteration: in-place writes of an input."""

    @property
    def fused(self) -> bool:
        return self.op is None

    @property
    def outputs(self) -> list[SSAValue]:
        """The values this kernel writes, in order."""
        if self.op is not None:
            return [self.op.results[0]]
        return [*self.stores, *(r.op.result for r in self.reductions)]


@dataclass
class FusionPlan:
    """The result of fusion: stored values and the kernels in schedule order."""

    function: func.FuncOp
    materialized: set[SSAValue] = field(default_factory=set[SSAValue])
    kernels: list[Kernel] = field(default_factory=list[Kernel])
    assigned: dict[SSAValue, SSAValue] = field(default_factory=dict[SSAValue, SSAValue])
    """The value of each `array.assign` and the argument it is written into."""

    def leaves(self, values: list[SSAValue], local: frozenset[SSAValue] = frozenset()
               ) -> list[SSAValue]:
        """The stored values that computing `values` element-wise reads.

        Values in `local` are computed by the reading kernel itself, not read.
        """
        seen: set[SSAValue] = set()
        out: list[SSAValue] = []
        stack = list(reversed(values))
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in self.materialized and v not in local:
                out.append(v)
            else:
                stack.extend(reversed(v.owner.operands))  # type: ignore[union-attr]
        return out


def reduction_of(op: A.ReduceOp) -> Reduction:
    """`op` as a reduction of its innermost source: reductions of same-kind reductions fold."""
    inner = op.operand.owner
    if type(inner) is not type(op):
        return Reduction(op, op.operand, op.axis_list)
    assert isinstance(inner, A.ReduceOp)
    base = reduction_of(inner)
    kept = [i for i in range(len(A.shape_of(base.source))) if i not in base.axes]
    axes = sorted({*base.axes, *(kept[a] for a in op.axis_list)})
    return Reduction(op, base.source, tuple(axes))


def _live_ops(body: list[Operation]) -> list[Operation]:
    """The ops a result depends on, with folded reductions reading their inner source."""
    ret = body[-1]
    live: set[SSAValue] = set(ret.operands)
    kept: list[Operation] = []
    for op in reversed(body[:-1]):
        if not any(r in live for r in op.results) and not isinstance(
                op, CallbackGradOp | A.AssignOp):
            continue
        kept.append(op)
        live.update(_inputs_of(op))
    return [*reversed(kept), ret]


def _inputs_of(op: Operation) -> tuple[SSAValue, ...]:
    if isinstance(op, A.ReduceOp):
        return (reduction_of(op).source,)
    return tuple(op.operands)


def plan_fusion(function: func.FuncOp) -> FusionPlan:
    """Decide buffers and kernels for an array-level function."""
    body = _live_ops(list(function.body.block.ops))
    required: set[SSAValue] = set(function.body.block.args)
    for op in body:
        if isinstance(op, func.ReturnOp):
            required.update(op.operands)
        elif not is_fusible(op):
            required.update(op.results)
        if isinstance(op, A.MatmulOp):
            for v in (op.lhs, op.rhs):
                required.add(v.owner.operand if is_matmul_transpose(v) else v)
        if isinstance(op, CallbackGradOp):
            required.update(op.operands)
    plan = FusionPlan(function, set(required))
    for op in body:
        if isinstance(op, A.AssignOp):
            required.add(op.value)
            plan.materialized.add(op.value)
            plan.assigned.setdefault(op.value, op.target)
    for _ in range(_MAX_ROUNDS):
        plan.kernels = _group(plan, body)
        extra = _costly(plan, body)
        if not extra:
            break
        plan.materialized |= extra
    _drop_private_stores(plan, required)
    return plan


# -- grouping -------------------------------------------------------------------


def _accesses(plan: FusionPlan, values: list[SSAValue]) -> dict[SSAValue, bool]:
    """Stored values read while computing `values`, and whether only at the same element."""
    out: dict[SSAValue, bool] = {}
    seen: set[tuple[SSAValue, bool]] = set()
    stack = [(v, True) for v in values]
    while stack:
        v, same = stack.pop()
        if (v, same) in seen:
            continue
        seen.add((v, same))
        if v in plan.materialized:
            out[v] = out.get(v, True) and same
            continue
        op = v.owner
        assert isinstance(op, Operation)
        if isinstance(op, INDEX_MAP_OPS) and not is_identity_map(op):
            same = False
        stack.extend((o, same) for o in op.operands)
    return out


def _group(plan: FusionPlan, body: list[Operation]) -> list[Kernel]:
    kernels: list[Kernel] = []
    producer: dict[SSAValue, int] = {}
    last_read: dict[SSAValue, int] = {}  # per input: the last kernel reading it so far
    for op in body:
        if isinstance(op, func.ReturnOp) or not op.results:
            continue
        v = op.results[0]
        if isinstance(op, A.ReduceOp):
            red = reduction_of(op)
            accesses = _accesses(plan, [red.source])
            k = _join(kernels, producer, squeeze(A.shape_of(red.source)), accesses)
            kernels[k].reductions.append(red)
            read = list(accesses)
        elif is_fusible(op):
            if v not in plan.materialized:
                continue
            accesses = _accesses(plan, list(op.operands))
            target = plan.assigned.get(v)
            floor = 0 if target is None else last_read.get(target, -1) + 1
            k = _join(kernels, producer, squeeze(A.shape_of(v)), accesses, map_op=op,
                      floor=floor)
            kernels[k].stores.append(v)
            read = list(accesses)
        else:
            kernels.append(Kernel(op=op))
            k = len(kernels) - 1
            read = _reads(plan, kernels[k])
        for r in read:
            if isinstance(r, BlockArgument):
                last_read[r] = max(last_read.get(r, -1), k)
        producer[v] = k
    return kernels


def _join(kernels: list[Kernel], producer: dict[SSAValue, int], domain: tuple[int, ...],
          accesses: dict[SSAValue, bool], map_op: Operation | None = None,
          floor: int = 0) -> int:
    """The index of the fused kernel a new store or reduction joins (appended if none),
    given the stored values it reads (`_accesses`); never one before `floor`."""
    same = not (isinstance(map_op, INDEX_MAP_OPS) and not is_identity_map(map_op))
    lowest = floor
    for v, at_same in accesses.items():
        k = producer.get(v)
        if k is None:
            continue
        shared = same and at_same and v in kernels[k].stores
        lowest = max(lowest, k if shared else k + 1)
    for k in range(lowest, len(kernels)):
        if kernels[k].fused and kernels[k].domain == domain:
            return k
    kernels.append(Kernel(domain=domain))
    return len(kernels) - 1


# -- the cost model ---------------------------------------------------------------


def _costly(plan: FusionPlan, body: list[Operation]) -> set[SSAValue]:
    """Fusible values that the kernels recompute often enough to be worth storing."""
    cost: dict[SSAValue, int] = {}
    constant: set[SSAValue] = set()
    for op in body:
        if not op.results:
            continue
        if is_fusible(op) and all(v in constant for v in op.operands):
            constant.add(op.results[0])  # folded by the target: free to recompute
        inner = sum(cost.get(v, 0) for v in set(op.operands) if v not in plan.materialized)
        cost[op.results[0]] = min(_COST_CAP, _own_cost(op) + inner)
    sweeps = _sweeps(plan)
    extra: set[SSAValue] = set()
    shadowed: set[SSAValue] = set()
    for op in reversed(body):
        if not op.results or not is_fusible(op):
            continue
        v = op.results[0]
        if v in plan.materialized or v in shadowed or v in constant or _own_cost(op) == 0:
            continue
        if cost[v] * (sweeps.get(v, 0.0) - 1) >= RECOMPUTE_THRESHOLD:
            extra.add(v)
            shadowed.update(plan.leaves(list(op.operands)))
            shadowed.update(_computed(plan, list(op.operands)))
    return extra


def _computed(plan: FusionPlan, values: list[SSAValue]) -> set[SSAValue]:
    """The non-stored values computing `values` element-wise evaluates."""
    seen: set[SSAValue] = set()
    stack = list(values)
    while stack:
        v = stack.pop()
        if v in seen or v in plan.materialized:
            continue
        seen.add(v)
        stack.extend(v.owner.operands)  # type: ignore[union-attr]
    return seen


def _sweeps(plan: FusionPlan) -> dict[SSAValue, float]:
    """How many times the kernels evaluate each element of each non-stored value."""
    sweeps: dict[SSAValue, float] = {}
    for kernel in plan.kernels:
        if kernel.fused:
            size = size_of(kernel.domain)
            starts = [*kernel.stores, *(r.source for r in kernel.reductions)]
            local = frozenset(kernel.stores)
            _count(plan, [(v, ()) for v in starts], size, local, sweeps)
        elif not isinstance(kernel.op, A.MatmulOp):
            assert kernel.op is not None
            for v in kernel.op.operands:
                if isinstance(v.type, TensorType):
                    _count(plan, [(v, (kernel.op,))], size_of(A.shape_of(v)), frozenset(), sweeps)
    return sweeps


def _count(plan: FusionPlan, starts: list[tuple[SSAValue, tuple[Operation, ...]]], size: int,
           local: frozenset[SSAValue], sweeps: dict[SSAValue, float]) -> None:
    seen: set[tuple[SSAValue, tuple[Operation, ...]]] = set()
    stack = list(starts)
    while stack:
        v, path = stack.pop()
        if (v, path) in seen:
            continue
        seen.add((v, path))
        if v in plan.materialized and not (v in local and not path):
            continue
        if v not in plan.materialized:
            sweeps[v] = sweeps.get(v, 0.0) + size / max(1, size_of(A.shape_of(v)))
        op = v.owner
        assert isinstance(op, Operation)
        if isinstance(op, INDEX_MAP_OPS) and not is_identity_map(op):
            path = (*path, op)
        stack.extend((o, path) for o in op.operands)


def _drop_private_stores(plan: FusionPlan, required: set[SSAValue]) -> None:
    """Unstore values only their own kernel reads; record what each kernel reads."""
    read: set[SSAValue] = set()
    for kernel in plan.kernels:
        kernel.reads = _reads(plan, kernel)
        read.update(kernel.reads)
    for kernel in plan.kernels:
        private = [v for v in kernel.stores if v not in required and v not in read]
        for v in private:
            kernel.stores.remove(v)
            plan.materialized.discard(v)
    plan.kernels = [k for k in plan.kernels if k.outputs]
    for kernel in plan.kernels:
        kernel.reads = _reads(plan, kernel)


def element_reads(plan: FusionPlan, kernel: Kernel) -> dict[SSAValue, bool]:
    """Stored values a fused kernel reads, and whether each only at the element of the
    domain being computed."""
    starts = [(r.source, True) for r in kernel.reductions]
    for v in kernel.stores:
        op = v.owner
        assert isinstance(op, Operation)
        same = not (isinstance(op, INDEX_MAP_OPS) and not is_identity_map(op))
        starts += [(o, same) for o in op.operands]
    out: dict[SSAValue, bool] = {}
    for v, same in starts:
        for w, at_same in _accesses(plan, [v]).items():
            out[w] = out.get(w, True) and same and at_same
    return out


def _reads(plan: FusionPlan, kernel: Kernel) -> list[SSAValue]:
    if kernel.fused:
        starts = [*kernel.stores, *(r.source for r in kernel.reductions)]
        return plan.leaves(starts, frozenset(kernel.stores))
    op = kernel.op
    assert op is not None
    if isinstance(op, A.MatmulOp):
        return [v.owner.operand if is_matmul_transpose(v) else v  # type: ignore[union-attr]
                for v in (op.lhs, op.rhs)]
    return plan.leaves(list(op.operands))
