"""Reduction combiners: the scalar op, identity and contract name of each accumulation.

Reductions, scans and scatters accumulate with one of four combiners, named in the
kernel-level IR (`pullback.reduction`) as "add", "mul", "max" and "min".
"""

from __future__ import annotations

from xdsl.dialects import arith
from xdsl.dialects.builtin import AnyFloat, i1
from xdsl.dialects.utils.fast_math import FastMathFlag
from xdsl.ir import Attribute, Operation, SSAValue

from pullback.compiler.conversion.kernel_writer import KernelWriter
from pullback.compiler.dialects import array as A

REDUCE_FLAGS = arith.FastMathFlagsAttr([FastMathFlag.REASSOC, FastMathFlag.ALLOW_CONTRACT])


def combiner_name(op: Operation) -> str:
    """The contract's name of the combiner of a reduction, scan or scatter op."""
    match op:
        case A.ReduceProdOp():
            return "mul"
        case A.ReduceMaxOp():
            return "max"
        case A.ReduceMinOp():
            return "min"
        case _:
            return "add"


def identity(op: Operation, el: Attribute) -> float | int:
    """The identity of `op`'s combiner for element type `el`."""
    is_float = isinstance(el, AnyFloat)
    match combiner_name(op):
        case "add":
            return 0.0 if is_float else 0
        case "mul":
            return 1.0 if is_float else 1
        case "max":
            return float("-inf") if is_float else -(2**63)
        case _:
            return float("inf") if is_float else 2**63 - 1


def combine(w: KernelWriter, op: Operation, acc: SSAValue, x: SSAValue) -> SSAValue:
    """`acc` combined with `x` by `op`'s combiner."""
    is_float = isinstance(acc.type, AnyFloat)
    if acc.type == i1:
        raise NotImplementedError(f"'{op.name}' has no lowering for element type i1")
    match combiner_name(op):
        case "add":
            new = arith.AddfOp(acc, x, REDUCE_FLAGS) if is_float else arith.AddiOp(acc, x)
        case "mul":
            new = arith.MulfOp(acc, x, REDUCE_FLAGS) if is_float else arith.MuliOp(acc, x)
        case "max":
            new = arith.MaximumfOp(acc, x, REDUCE_FLAGS) if is_float else arith.MaxSIOp(acc, x)
        case _:
            new = arith.MinimumfOp(acc, x, REDUCE_FLAGS) if is_float else arith.MinSIOp(acc, x)
    return w.add(new)
