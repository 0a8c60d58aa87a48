"""Reduction combiners at the kernel level: identities, combining steps and the
combiner regions of `scf.reduce`, as arith ops.

The combiner of an op is its `ReductionWithCombiner` trait; the scalar op and the
identity come from the one table in `compiler/dialects/combiners.py`. Backends read a
reduction's combiner from the IR (the op in its `scf.reduce` region), never by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import AnyFloat, i1
from xdsl.dialects.utils.fast_math import FastMathFlag
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from pullback.compiler.diagnostics import located
from pullback.compiler.dialects.combiners import Combiner
from pullback.compiler.dialects.traits import combiner_of

if TYPE_CHECKING:
    from pullback.compiler.conversion.kernel_writer import KernelWriter

REDUCE_FLAGS = arith.FastMathFlagsAttr([FastMathFlag.REASSOC, FastMathFlag.ALLOW_CONTRACT])


def reduction_combiner(op: Operation, el: Attribute) -> Combiner:
    """The combiner of a reduction, scan or scatter op over elements of type `el`."""
    if el == i1:
        raise NotImplementedError(located(op, f"'{op.name}' has no lowering for element type i1"))
    return combiner_of(op)


def identity(op: Operation, el: Attribute) -> float | int:
    """The identity of `op`'s combiner for element type `el`."""
    return combiner_of(op).identity(el)


def combining_op(combiner: Combiner, acc: SSAValue, x: SSAValue) -> Operation:
    """The op computing `acc` combined with `x` (float steps may be reassociated)."""
    cls = combiner.scalar_op(acc.type)
    if isinstance(acc.type, AnyFloat):
        return cls(acc, x, REDUCE_FLAGS)  # type: ignore[call-arg]
    return cls(acc, x)  # type: ignore[call-arg]


def combiner_region(combiner: Combiner, el: Attribute) -> Region:
    """The `scf.reduce` region of `combiner` on two values of type `el`."""
    block = Block(arg_types=[el, el])
    step = combining_op(combiner, block.args[0], block.args[1])
    block.add_ops([step, scf.ReduceReturnOp(step.results[0])])
    return Region(block)


def combine(w: KernelWriter, op: Operation, acc: SSAValue, x: SSAValue) -> SSAValue:
    """`acc` combined with `x` by `op`'s combiner (float steps may be reassociated)."""
    return w.add(combining_op(reduction_combiner(op, acc.type), acc, x))
