"""Turning a recorded region into a function of its own: capturing outside values."""

from __future__ import annotations

from xdsl.ir import Block, SSAValue


def capture(block: Block) -> list[SSAValue]:
    """Make every value the ops of `block` (nested regions included) use from outside it
    a new argument of `block`; return those outside values, in argument order."""
    inside: set[SSAValue] = set(block.args)
    for op in block.walk():
        inside.update(op.results)
        for region in op.regions:
            for b in region.blocks:
                inside.update(b.args)
    args: dict[SSAValue, SSAValue] = {}
    for op in block.walk():
        for i, v in enumerate(op.operands):
            if v in inside:
                continue
            if v not in args:
                args[v] = block.insert_arg(v.type, len(block.args))
                inside.add(args[v])
            op.operands[i] = args[v]
    return list(args)
