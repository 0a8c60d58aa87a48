"""Reduction combiners at the kernel level: identities and combining steps as arith ops.

The combiner of an op is its `ReductionWithCombiner` trait; the scalar op and the
identity come from the one table in `compiler/dialects/combiners.py`, which the
OpenCL backend reads too.
"""

from __future__ import annotations

from xdsl.dialects import arith
from xdsl.dialects.builtin import AnyFloat, i1
from xdsl.dialects.utils.fast_math import FastMathFlag
from xdsl.ir import Attribute, Operation, SSAValue

from pullback.compiler.conversion.kernel_writer import KernelWriter
from pullback.compiler.diagnostics import located
from pullback.compiler.dialects.traits import combiner_of

REDUCE_FLAGS = arith.FastMathFlagsAttr([FastMathFlag.REASSOC, FastMathFlag.ALLOW_CONTRACT])


def combiner_name(op: Operation) -> str:
    """The kernel-level name of the combiner of a reduction, scan or scatter op."""
    return combiner_of(op).name


def identity(op: Operation, el: Attribute) -> float | int:
    """The identity of `op`'s combiner for element type `el`."""
    return combiner_of(op).identity(el)


def combine(w: KernelWriter, op: Operation, acc: SSAValue, x: SSAValue) -> SSAValue:
    """`acc` combined with `x` by `op`'s combiner (float steps may be reassociated)."""
    if acc.type == i1:
        raise NotImplementedError(located(op, f"'{op.name}' has no lowering for element type i1"))
    cls = combiner_of(op).scalar_op(acc.type)
    if isinstance(acc.type, AnyFloat):
        return w.add(cls(acc, x, REDUCE_FLAGS))  # type: ignore[call-arg]
    return w.add(cls(acc, x))  # type: ignore[call-arg]
