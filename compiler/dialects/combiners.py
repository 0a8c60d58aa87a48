"""Reduction combiners: the one table of how reductions, scans and scatters accumulate.

A combiner ("add", "mul", "max", "min") has a scalar `arith` op per element kind
(float or integer) and an identity per element type. Ops say which combiner they use
with the `ReductionWithCombiner` trait (`traits.py`). Kernel-level IR carries both:
a reducing `scf.parallel` starts from the identities and its `scf.reduce` regions
hold the scalar ops, which is where the backends read them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from xdsl.dialects import arith
from xdsl.dialects.builtin import AnyFloat, IndexType, IntegerType
from xdsl.ir import Attribute, Operation


def _int_width(t: Attribute) -> int:
    if isinstance(t, IndexType):
        return 64
    if isinstance(t, IntegerType):
        return t.width.data
    raise TypeError(f"a reduction combiner needs a float, integer or index type, got {t}")


def _smallest(width: int) -> int:
    """The smallest value of a signed integer of `width` bits (`i1` counts as 0/1)."""
    return 0 if width == 1 else -(2 ** (width - 1))


def _largest(width: int) -> int:
    """The largest value of a signed integer of `width` bits (`i1` counts as 0/1)."""
    return 1 if width == 1 else 2 ** (width - 1) - 1


@dataclass(frozen=True)
class Combiner:
    """An associative, commutative scalar op with an identity.

    `float_op` / `int_op`: the `arith` op combining two floats / two signed integers.
    `float_identity`: the identity for floats; `int_identity(width)` for integers.
    """

    name: str
    float_op: type[Operation]
    int_op: type[Operation]
    float_identity: float
    int_identity: Callable[[int], int]

    def identity(self, t: Attribute) -> float | int:
        """The identity for element type `t`."""
        if isinstance(t, AnyFloat):
            return self.float_identity
        return self.int_identity(_int_width(t))

    def scalar_op(self, t: Attribute) -> type[Operation]:
        """The `arith` op combining two values of element type `t`."""
        return self.float_op if isinstance(t, AnyFloat) else self.int_op


ADD = Combiner("add", arith.AddfOp, arith.AddiOp, 0.0, lambda width: 0)
MUL = Combiner("mul", arith.MulfOp, arith.MuliOp, 1.0, lambda width: 1)
MAX = Combiner("max", arith.MaximumfOp, arith.MaxSIOp, -math.inf, _smallest)
MIN = Combiner("min", arith.MinimumfOp, arith.MinSIOp, math.inf, _largest)

COMBINERS: dict[str, Combiner] = {c.name: c for c in (ADD, MUL, MAX, MIN)}
"""Every combiner by its name."""

