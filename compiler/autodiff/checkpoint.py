"""Checkpointing: `ad.checkpoint` regions, their derivatives, and the `checkpoint` pass.

An `ad.checkpoint` region trades compute for memory. Its VJP rule (in `rules/ad.py`)
keeps nothing of the region for the backward pass but its operands: the forward pass
computes the region's result (the region itself, inlined later), and the backward
pass recomputes the region from its operands and differentiates that copy with the
incoming cotangent (`@region_vjp`, inlined at the point of the backward sweep where
the region's cotangent is complete). Its JVP rule inlines the region's `jvp`, its
batching rule the region's `vmap`.

Keeping the recomputation apart from the forward computation: the copy the backward
pass inlines carries the unit attribute `pullback.recompute` on every op. Common
subexpression elimination compares attributes, so it never merges a recomputed op
with its forward twin; were they merged, the forward value would stay alive until the
backward pass and the memory saving would be lost. A mark was chosen over keeping the
copy inside a region until lowering because the copy is then ordinary code: the later
AD passes (second order), the cleanup passes and fusion treat it like any other op.
The forward region itself is `IsolatedFromAbove`, so cleanup never makes it read a
value from outside either; it stays a region until `inline-checkpoints` inlines it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, UnitAttr
from xdsl.ir import Block, SSAValue
from xdsl.passes import ModulePass

from pullback.compiler.dialects.ad import CheckpointOp, ForwardOp, ReverseBeginOp, YieldOp

RECOMPUTE_MARK = "pullback.recompute"
"""Unit attribute on the ops the backward pass recomputes from a checkpoint's operands."""


def region_function(op: CheckpointOp | ForwardOp,
                    name: str = "checkpoint_region") -> tuple[ModuleOp, func.FuncOp]:
    """A copy of `op`'s single-result region (ending in `ad.yield`) as
    `@name(region arguments...) -> result`, alone in a module of its own (the AD passes
    add their functions next to it)."""
    region = op.body.clone()
    block = region.block
    last = block.last_op
    assert isinstance(last, YieldOp)
    value = last.values[0]
    last.detach()
    last.erase()
    block.add_op(func.ReturnOp(value))
    fn = func.FuncOp(name, ([a.type for a in block.args], [op.result.type]), region)
    return ModuleOp([fn]), fn


def inline_function(block: Block, fn: func.FuncOp, args: Sequence[SSAValue],
                    mark: str = "") -> list[SSAValue]:
    """Append a copy of the single-block `fn` to `block` with its arguments bound to
    `args`; the values it returns. With `mark`, every copied op carries that unit
    attribute. `fn`'s `ad.reverse_begin`, if any, is dropped: it marks `fn`'s sweep,
    not one of `block`'s function."""
    body = fn.body.block
    mapping: dict[SSAValue, SSAValue] = dict(zip(body.args, args, strict=True))
    for op in body.ops:
        if isinstance(op, func.ReturnOp):
            return [mapping.get(v, v) for v in op.arguments]
        if isinstance(op, ReverseBeginOp):
            continue
        clone = op.clone(mapping)
        if mark:
            for inner in clone.walk():
                inner.attributes[mark] = UnitAttr()
        block.add_op(clone)
    raise ValueError(f"@{fn.sym_name.data} does not end in func.return")


def inline_checkpoints(module: ModuleOp) -> None:
    """Replace every `ad.checkpoint` by the ops of its region (innermost first)."""
    for op in reversed(list(module.walk())):
        if not isinstance(op, CheckpointOp):
            continue
        block = op.body.block
        for arg, value in zip(block.args, op.inputs, strict=True):
            arg.replace_all_uses_with(value)
        for inner in list(block.ops):
            inner.detach()
            if isinstance(inner, YieldOp):
                op.result.replace_all_uses_with(inner.values[0])
                inner.erase()
            else:
                op.parent_block().insert_op_before(inner, op)  # type: ignore[union-attr]
        op.detach()
        op.erase()


@dataclass(frozen=True)
class CheckpointPass(ModulePass):
    """Inline the `ad.checkpoint` regions left after differentiation into plain ops.

    Input invariant: the AD passes have run (the derivatives that need a checkpoint's
    region have been built from it).

    Output IR: no `ad.checkpoint` op; each region's ops stand in its place, its
    arguments replaced by its operands and its result by the value it yielded. The
    recomputed copies of the backward pass keep their `pullback.recompute` mark (see
    the module docstring). The first pass of every device's lowering.
    """

    name = "inline-checkpoints"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        inline_checkpoints(op)
