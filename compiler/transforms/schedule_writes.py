"""`schedule-writes`: compute each written value as early as its operands allow.

An `array.assign %arg, %value` takes effect when the function returns, so where the
ops computing `value` stand is free, as long as SSA order holds. A training step
written as "gradient, then optimiser update" computes every update after the whole
backward pass, which keeps every gradient alive to the end. This pass moves the ops
that only serve assigns (every use is an assign or another such op), in groups
connected by use (one parameter's update with its optimiser state's), to just after
the last of

* the definitions of the values the group reads from outside it, and
* the ops outside the group that read an argument it assigns (the old value), directly
  or through fusible ops, which fusion may compute inside a later kernel,

so each update runs where its gradient is complete and every read of the old
parameter is done: the gradient dies at once, and the lowering can write the
parameter in place (`conversion/in_place.py`). Small values the group shares with
others (splat constants, step counts, bias corrections: `SMALL` elements at most)
are computed early along with it. Slices never move later, and the relative order
of the moved ops is kept.

Input invariant: single-block functions of `array` ops (regions inlined). Output IR:
the same ops, some moved earlier within their block.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod as size_of

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.traits import is_side_effect_free

from pullback.compiler.dialects.array import AssignOp, FullOp, shape_of
from pullback.compiler.transforms.fusion import INDEX_MAP_OPS, is_fusible

SMALL = 64
"""Elements of a result small enough to compute early for a slice that needs it."""


def _stored(value: SSAValue) -> bool:
    """Whether fusion surely gives `value` a buffer: a non-fusible op reads it."""
    return any(not is_fusible(use.operation) for use in value.uses)


def _readers(value: SSAValue) -> set[Operation]:
    """The ops that read `value`, directly, through index maps (fusion reads their
    source where their result is needed; a matrix product folds a transpose) or through
    elementwise ops whose results may not be stored, so that a later kernel computes
    their elements, and reads `value`, where it needs them."""
    out: set[Operation] = set()
    stack = [value]
    while stack:
        for use in stack.pop().uses:
            op = use.operation
            if op in out:
                continue
            out.add(op)
            if isinstance(op, INDEX_MAP_OPS):  # never stored: its readers read the source
                stack.extend(op.results)
            elif is_fusible(op):
                stack.extend(r for r in op.results if not _stored(r))
    return out


def _cheap(op: Operation) -> bool:
    """A pure op whose result is free or small to keep: moved early when a slice needs it
    (shared constants, step counts, bias corrections)."""
    if op.regions or len(op.results) != 1 or not is_side_effect_free(op):
        return False
    if isinstance(op, FullOp):
        return True
    return size_of(shape_of(op.results[0])) <= SMALL


def _write_groups(block: Block) -> list[tuple[list[Operation], list[AssignOp]]]:
    """Groups of assigns and the ops that serve only them, in block order.

    An op *serves* the assigns its result reaches when every use is an assign or
    another serving op (shared splat constants excluded: they are hoisted instead).
    Assigns whose values feed each other's (a parameter's update reads the new
    optimiser state) form one group; a group takes the serving ops that reach only
    its assigns."""
    ops = list(block.ops)
    assigns = [op for op in ops if isinstance(op, AssignOp)]
    reach: dict[Operation, frozenset[AssignOp]] = {}
    for op in reversed(ops):
        if (isinstance(op, AssignOp | FullOp) or op.regions or len(op.results) != 1
                or not is_side_effect_free(op)):  # host calls keep their order
            continue
        uses = [u.operation for u in op.results[0].uses]
        if uses and all(isinstance(u, AssignOp) or u in reach for u in uses):
            reach[op] = frozenset().union(
                *({u} if isinstance(u, AssignOp) else reach[u] for u in uses))
    parent: dict[AssignOp, AssignOp] = {a: a for a in assigns}

    def find(a: AssignOp) -> AssignOp:
        while parent[a] is not a:
            a = parent[a]
        return a

    for a in assigns:
        owner = a.value.owner
        for b in reach.get(owner, ()) if isinstance(owner, Operation) else ():
            parent[find(b)] = find(a)
    groups: dict[AssignOp, tuple[list[Operation], list[AssignOp]]] = {}
    for a in assigns:
        groups.setdefault(find(a), ([], []))[1].append(a)
    for op in ops:
        targets = reach.get(op)
        if targets:
            root = find(next(iter(targets)))
            if all(find(t) is root for t in targets):
                groups[root][0].append(op)
    return [g for g in groups.values() if g[0]]


def _move_earlier(block: Block, members: list[Operation], assigns: list[AssignOp]) -> None:
    """Move `members` (in order) to just after the last op they must follow."""
    inside = set(members)
    ops = list(block.ops)
    position = {op: k for k, op in enumerate(ops)}
    earliest: dict[Operation, int] = {}

    def ready(op: Operation) -> int:
        """Where the operands of `op` are all defined, moving cheap ones early."""
        if op not in earliest:
            at = -1
            for v in op.operands:
                src = v.owner
                if isinstance(src, Operation) and src.parent is block:
                    at = max(at, ready(src) if _cheap(src) else position[src])
            earliest[op] = at
        return earliest[op]

    latest = -1
    for op in members:
        for v in op.operands:
            src = v.owner
            if isinstance(src, Operation) and src.parent is block and src not in inside:
                latest = max(latest, ready(src) if _cheap(src) else position[src])
    for assign in assigns:
        for reader in _readers(assign.target):
            if not isinstance(reader, AssignOp) and reader not in inside:
                latest = max(latest, position[reader])
    if latest >= position[members[-1]]:
        return
    hoisted = [op for op in earliest if _cheap(op) and op not in inside
               and position[op] > latest]
    moved = set(hoisted) | inside
    anchor = next(op for op in ops[latest + 1:] if op not in moved)
    for op in sorted(hoisted, key=position.__getitem__) + members:
        op.detach()
        block.insert_op_before(op, anchor)


def schedule_writes(function: func.FuncOp) -> None:
    """Move each group of ops serving `array.assign`s early (module docstring)."""
    if function.is_declaration:
        return
    block = function.body.block
    for members, assigns in _write_groups(block):
        _move_earlier(block, members, assigns)


@dataclass(frozen=True)
class ScheduleWritesPass(ModulePass):
    """Compute each assigned value as early as its operands allow (module docstring)."""

    name = "schedule-writes"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for f in op.body.block.ops:
            if isinstance(f, func.FuncOp):
                schedule_writes(f)
