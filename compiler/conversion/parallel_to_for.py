"""`convert-parallel-to-for`: each `scf.parallel` becomes a nest of `scf.for` loops.

Input invariant: kernel-level IR (the output of `convert-kernels-to-loops`), any
`scf.parallel` in it ending in `scf.reduce`.

Output IR: no `scf.parallel`. A parallel op over n dimensions becomes n nested
`scf.for` loops (same bounds and steps, outermost first). Its reduced values are
carried by every loop of the nest (`iter_args`), starting from the parallel op's init
values; the innermost body ends with each combiner region inlined as
`acc = combiner(acc, contribution)`, ops and flags as written in the region, so the
loop is the accumulator chain a serial reduction would be. A parallel op without
dimensions is its body, run once in place.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import scf
from xdsl.dialects.builtin import IndexType, ModuleOp
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter


def _inline_combiner(region_block: Block, acc: SSAValue, x: SSAValue,
                     ops: list[Operation]) -> SSAValue:
    """Append copies of a combiner region's ops on (`acc`, `x`) to `ops`; returns the
    combined value."""
    mapping: dict[SSAValue, SSAValue] = {region_block.args[0]: acc, region_block.args[1]: x}
    for op in region_block.ops:
        if isinstance(op, scf.ReduceReturnOp):
            return mapping.get(op.result, op.result)
        ops.append(op.clone(value_mapper=mapping))
    raise ValueError("an scf.reduce region must end in scf.reduce.return")


def parallel_to_for(op: scf.ParallelOp) -> None:
    """Replace `op` by the equivalent nest of `scf.for` loops."""
    body = op.body.block
    reduce = body.last_op
    if not isinstance(reduce, scf.ReduceOp):
        raise ValueError("an scf.parallel body must end in scf.reduce")
    if not op.lowerBound:  # no dimension: the body runs once
        ops = [o for o in body.ops if o is not reduce]
        for o in ops:
            o.detach()
        values = [_inline_combiner(region.block, init, x, ops) for region, init, x
                  in zip(reduce.reductions, op.initVals, reduce.args, strict=True)]
        Rewriter.replace_op(op, ops, values)
        return
    types = [v.type for v in op.initVals]
    carried: list[SSAValue] = list(op.initVals)
    loops: list[scf.ForOp] = []
    for lb, ub, step in zip(op.lowerBound, op.upperBound, op.step, strict=True):
        block = Block(arg_types=[IndexType(), *types])
        loop = scf.ForOp(lb, ub, step, carried, block)
        if loops:
            loops[-1].body.block.add_op(loop)
        loops.append(loop)
        carried = list(block.args[1:])
    for outer, inner in zip(loops, loops[1:]):
        outer.body.block.add_op(scf.YieldOp(*inner.results))
    innermost = loops[-1].body.block
    for arg, loop in zip(body.args, loops, strict=True):
        arg.replace_all_uses_with(loop.body.block.args[0])
    for inner_op in list(body.ops):
        if inner_op is reduce:
            break
        inner_op.detach()
        innermost.add_op(inner_op)
    combining: list[Operation] = []
    steps = [_inline_combiner(region.block, acc, x, combining)
             for region, acc, x in zip(reduce.reductions, carried, reduce.args, strict=True)]
    innermost.add_ops([*combining, scf.YieldOp(*steps)])
    Rewriter.replace_op(op, loops[0], loops[0].results)


@dataclass(frozen=True)
class ConvertParallelToForPass(ModulePass):
    """Lower every `scf.parallel` to `scf.for` loops (see the module docstring)."""

    name = "convert-parallel-to-for"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for parallel in [o for o in op.walk() if isinstance(o, scf.ParallelOp)]:
            parallel_to_for(parallel)
