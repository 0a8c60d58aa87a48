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
and never values computed from constants alone, which the target folds. The
decisions take one backward pass over the program, each value decided after every
value that reads it; the kernels are then formed again and the pass repeated until it
stores nothing more (in practice once): each pass that goes on stores at least one
more value, so the loop ends at any program size, and always with every stored value
in a kernel.

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

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from math import prod as size_of

from xdsl.dialects import func
from xdsl.dialects.builtin import TensorType
from xdsl.ir import BlockArgument, Operation, SSAValue

from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.ad import CallbackGradOp
from pullback.compiler.dialects.traits import Elementwise, Expensive, IndexMap, has

INDEX_MAP_OPS: tuple[type[Operation], ...] = tuple(
    op for op in A.Array.operations if has(op, IndexMap))
"""The array ops with the `IndexMap` trait (they move elements, compute none)."""
RECOMPUTE_THRESHOLD = 3
_COST_CAP = 1000


def is_fusible(op: Operation) -> bool:
    """Whether a kernel may compute elements of `op` inside its own loops."""
    if has(op, Elementwise) or isinstance(op, (*INDEX_MAP_OPS, A.FullOp)):
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
    return 8 if has(op, Expensive) else 1


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

    def leaves(self, values: list[SSAValue], local: frozenset[SSAValue] = frozenset(),
               memo: dict[SSAValue, list[SSAValue]] | None = None) -> list[SSAValue]:
        """The stored values that computing `values` element-wise reads, in the order a
        depth-first walk from `values` first meets them.

        Values in `local` are computed by the reading kernel itself, not read. `memo`
        keeps what each value meets (`frontier`) for later calls while the stored
        values stay the same.
        """
        memo = {} if memo is None else memo

        def met(starts: Iterable[SSAValue]) -> Iterator[SSAValue]:
            return (w for v in starts for w in self.frontier(v, memo))

        seen: set[SSAValue] = set()
        out: list[SSAValue] = []
        pending = [met(values)]
        while pending:
            w = next(pending[-1], None)
            if w is None:
                pending.pop()
            elif w not in seen:
                seen.add(w)
                if w in local:  # computed here: what it reads comes in its place
                    pending.append(met(w.owner.operands))  # type: ignore[union-attr]
                else:
                    out.append(w)
        return out

    def frontier(self, value: SSAValue, memo: dict[SSAValue, list[SSAValue]]
                 ) -> list[SSAValue]:
        """The stored values a depth-first walk from `value` through values not stored
        meets, in order; each value's answer is built from its operands' (no recursion,
        so a chain of any depth is walked)."""
        stack = [(value, False)]
        while stack:
            v, ready = stack.pop()
            if v in memo:
                continue
            if v in self.materialized:
                memo[v] = [v]
                continue
            operands = v.owner.operands  # type: ignore[union-attr]
            if not ready:
                stack.append((v, True))
                stack.extend((o, False) for o in operands if o not in memo)
                continue
            memo[v] = list(dict.fromkeys(w for o in operands for w in memo[o]))
        return memo[value]


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
    while True:  # each round stores at least one more value, or ends
        plan.kernels = _group(plan, body)
        if not _store_costly(plan, body):
            break
    _drop_private_stores(plan, required)
    return plan


# -- grouping -------------------------------------------------------------------


Accesses = dict[SSAValue, bool]


def _accesses(plan: FusionPlan, values: list[SSAValue],
              memo: dict[tuple[SSAValue, bool], Accesses] | None = None) -> Accesses:
    """Stored values read while computing `values`, and whether only at the same element.

    `memo` keeps each value's answer for later calls while no value it reads through
    becomes stored (a pass that stores values downstream of every later query).
    """
    memo = {} if memo is None else memo
    out: Accesses = {}
    for v in values:
        for w, same in _accesses_of(plan, v, memo).items():
            out[w] = out.get(w, True) and same
    return out


def _accesses_of(plan: FusionPlan, value: SSAValue,
                 memo: dict[tuple[SSAValue, bool], Accesses]) -> Accesses:
    """`_accesses` of one value, each value's answer built from its operands' (no
    recursion: a chain of any depth is walked with an explicit stack)."""
    stack = [(value, True, False)]
    while stack:
        v, same, ready = stack.pop()
        if (v, same) in memo:
            continue
        if v in plan.materialized:
            memo[v, same] = {v: same}
            continue
        op = v.owner
        assert isinstance(op, Operation)
        inner = same and not (isinstance(op, INDEX_MAP_OPS) and not is_identity_map(op))
        if not ready:
            stack.append((v, same, True))
            stack.extend((o, inner, False) for o in op.operands if (o, inner) not in memo)
            continue
        out: Accesses = {}
        for o in op.operands:
            for w, at_same in memo[o, inner].items():
                out[w] = out.get(w, True) and at_same
        memo[v, same] = out
    return memo[value, True]


def _group(plan: FusionPlan, body: list[Operation]) -> list[Kernel]:
    kernels: list[Kernel] = []
    producer: dict[SSAValue, int] = {}
    last_read: dict[SSAValue, int] = {}  # per input: the last kernel reading it so far
    memo: dict[tuple[SSAValue, bool], Accesses] = {}  # no value becomes stored here
    frontiers: dict[SSAValue, list[SSAValue]] = {}
    for op in body:
        if isinstance(op, func.ReturnOp) or not op.results:
            continue
        v = op.results[0]
        if isinstance(op, A.ReduceOp):
            red = reduction_of(op)
            accesses = _accesses(plan, [red.source], memo)
            k = _join(kernels, producer, squeeze(A.shape_of(red.source)), accesses)
            kernels[k].reductions.append(red)
            read = list(accesses)
        elif is_fusible(op):
            if v not in plan.materialized:
                continue
            accesses = _accesses(plan, list(op.operands), memo)
            target = plan.assigned.get(v)
            floor = 0 if target is None else last_read.get(target, -1) + 1
            k = _join(kernels, producer, squeeze(A.shape_of(v)), accesses, map_op=op,
                      floor=floor)
            kernels[k].stores.append(v)
            read = list(accesses)
        else:
            kernels.append(Kernel(op=op))
            k = len(kernels) - 1
            read = _reads(plan, kernels[k], frontiers)
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


def _store_costly(plan: FusionPlan, body: list[Operation]) -> bool:
    """Store the fusible values that the kernels recompute often enough to be worth
    storing; returns whether it stored any.

    One backward pass decides every value after all the values that read it, so a
    chain of any depth is decided in one pass. Its sweep count comes from what reaches
    it (`_Reach`): the kernels as grouped, where the values stored earlier in the pass
    are computed by the kernel each would join (`_join`) and loaded by every other.
    Costs are those of the plan as the pass starts (storing a value lowers the cost
    of what reads it, which is decided already).
    """
    cost: dict[SSAValue, int] = {}
    constant: set[SSAValue] = set()
    for op in body:
        if not op.results:
            continue
        if is_fusible(op) and all(v in constant for v in op.operands):
            constant.add(op.results[0])  # folded by the target: free to recompute
        inner = sum(cost.get(v, 0) for v in set(op.operands) if v not in plan.materialized)
        cost[op.results[0]] = min(_COST_CAP, _own_cost(op) + inner)
    reach = _Reach(plan)
    kernels = list(plan.kernels)
    producer = {v: k for k, kernel in enumerate(kernels) for v in kernel.outputs}
    memo: dict[tuple[SSAValue, bool], Accesses] = {}  # stores come downstream of queries
    stored = False
    for op in reversed(body):
        if not op.results:
            continue
        v = op.results[0]
        candidate = is_fusible(op) and _own_cost(op) > 0 and not (
            v in plan.materialized or v in constant)
        if candidate and cost[v] * (reach.sweeps(v) - 1) >= RECOMPUTE_THRESHOLD:
            domain = squeeze(A.shape_of(v))
            accesses = _accesses(plan, list(op.operands), memo)
            k = _join(kernels, producer, domain, accesses, map_op=op)
            producer[v] = k
            plan.materialized.add(v)
            reach.computed_by(v, k, size_of(domain))
            stored = True
        reach.spread(v)
    return stored


class _Reach:
    """What evaluates each value, filled in backward program order.

    A *context* is one evaluation by the kernels: a fused kernel, computing its stores
    and reduction sources once per element of its domain, or one operand of a special
    op. A context evaluates a value once per *index path* by which it reaches it (the
    non-identity index maps in between), however many of its expressions use it. A
    value passes what reaches it on to its operands unless it is stored; a stored value
    passes on only its own context, reached at the empty path, which computes it.
    """

    def __init__(self, plan: FusionPlan):
        self.plan = plan
        self.sizes: list[int] = []
        self.local: list[set[SSAValue]] = []
        self.context_of: dict[int, int] = {}  # fused kernel -> its context
        self.nodes: dict[SSAValue, set[tuple[int, tuple[Operation, ...]]]] = {}
        for k, kernel in enumerate(plan.kernels):
            if kernel.fused:
                c = self.context_of[k] = self._context(size_of(kernel.domain), kernel.stores)
                for v in [*kernel.stores, *(r.source for r in kernel.reductions)]:
                    self.nodes.setdefault(v, set()).add((c, ()))
            elif not isinstance(kernel.op, A.MatmulOp):
                assert kernel.op is not None
                for v in kernel.op.operands:
                    if isinstance(v.type, TensorType):
                        c = self._context(size_of(A.shape_of(v)), [])
                        self.nodes.setdefault(v, set()).add((c, (kernel.op,)))

    def _context(self, size: int, local: list[SSAValue]) -> int:
        self.sizes.append(size)
        self.local.append(set(local))
        return len(self.sizes) - 1

    def sweeps(self, v: SSAValue) -> float:
        """How many times the kernels evaluate each element of `v`."""
        size = max(1, size_of(A.shape_of(v)))
        return sum(self.sizes[c] / size for c, _ in self.nodes.get(v, ()))

    def computed_by(self, v: SSAValue, kernel: int, size: int) -> None:
        """Newly stored `v` is computed by fused kernel `kernel` (of `size` elements;
        a kernel not grouped yet gets a new context)."""
        if kernel not in self.context_of:
            self.context_of[kernel] = self._context(size, [])
        c = self.context_of[kernel]
        self.local[c].add(v)
        self.nodes.setdefault(v, set()).add((c, ()))

    def spread(self, v: SSAValue) -> None:
        """Pass what reaches `v` on to its operands; `v` is decided."""
        nodes = self.nodes.pop(v, set())
        if v in self.plan.materialized:
            nodes = {(c, p) for c, p in nodes if not p and v in self.local[c]}
        op = v.owner
        if not nodes or not isinstance(op, Operation):
            return
        if isinstance(op, INDEX_MAP_OPS) and not is_identity_map(op):
            nodes = {(c, (*p, op)) for c, p in nodes}
        for o in op.operands:
            self.nodes.setdefault(o, set()).update(nodes)


def _drop_private_stores(plan: FusionPlan, required: set[SSAValue]) -> None:
    """Unstore values only their own kernel reads; record what each kernel reads."""
    read: set[SSAValue] = set()
    frontiers: dict[SSAValue, list[SSAValue]] = {}
    for kernel in plan.kernels:
        kernel.reads = _reads(plan, kernel, frontiers)
        read.update(kernel.reads)
    for kernel in plan.kernels:
        private = [v for v in kernel.stores if v not in required and v not in read]
        for v in private:
            kernel.stores.remove(v)
            plan.materialized.discard(v)
    plan.kernels = [k for k in plan.kernels if k.outputs]
    frontiers.clear()  # fewer values are stored now
    for kernel in plan.kernels:
        kernel.reads = _reads(plan, kernel, frontiers)


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


def _reads(plan: FusionPlan, kernel: Kernel,
           frontiers: dict[SSAValue, list[SSAValue]] | None = None) -> list[SSAValue]:
    if kernel.fused:
        starts = [*kernel.stores, *(r.source for r in kernel.reductions)]
        return plan.leaves(starts, frozenset(kernel.stores), frontiers)
    op = kernel.op
    assert op is not None
    if isinstance(op, A.MatmulOp):
        return [v.owner.operand if is_matmul_transpose(v) else v  # type: ignore[union-attr]
                for v in (op.lhs, op.rhs)]
    return plan.leaves(list(op.operands), memo=frontiers)
