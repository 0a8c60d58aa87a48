"""Op traits: facts about an op that passes, lowerings and backends read off its class.

Each fact is stated once, on the op's `traits`; the tables that used to list op
classes by hand (what fuses, what is costly to recompute, which combiner a reduction
uses) are derived from them. Query with `has(op, Trait)` or `combiner_of(op)`.

* `Elementwise(float_op, int_op)`: each result element is a function of the operands'
  elements at the same index (all of one shape), computed by the named standard scalar
  op, or by a rule of `SCALAR_RULES` (`conversion/scalar_ops.py`) where none is named.
* `IndexMap`: each result element is an operand element at a computed index
  (broadcast, reshape, transpose, slice, take): it moves elements, computes none.
* `Expensive`: several simple ops per element; fusion stores such a value rather
  than recompute it where it is read more than once.
* `FloatOnly`: operands and results are floating point tensors (the verifier checks).
* `ReductionWithCombiner(combiner)`: accumulates elements with `combiner`
  (`combiners.py`), whose identity starts each accumulation.
* `ArrayCanonicalization`: the op's `simplify` / `canonicalize` rewrite patterns
  (`dialects/array_canonicalization.py`, imported when first asked for).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from xdsl.dialects.builtin import AnyFloat, TensorType
from xdsl.ir import Operation
from xdsl.pattern_rewriter import RewritePattern
from xdsl.traits import HasCanonicalizationPatternsTrait, OpTrait
from xdsl.utils.exceptions import VerifyException

from pullback.compiler.dialects.combiners import Combiner


@dataclass(frozen=True)
class Elementwise(OpTrait):
    """Each result element is computed from the operands' elements at the same index.

    `float_op` / `int_op`: the standard scalar op (`arith`, `math`) computing one element
    from float / signed-integer elements, where a single op does (None: no such op, or
    the type is refused); ops needing more have a rule in `SCALAR_RULES`.
    """

    float_op: type[Operation] | None = None
    int_op: type[Operation] | None = None


@dataclass(frozen=True)
class IndexMap(OpTrait):
    """Each result element is an element of the first operand at a computed index."""


@dataclass(frozen=True)
class Expensive(OpTrait):
    """Costs several simple ops per element when recomputed."""


@dataclass(frozen=True)
class FloatOnly(OpTrait):
    """Every operand and result is a tensor of floating point elements."""

    def verify(self, op: Operation) -> None:
        for value in (*op.operands, *op.results):
            t = value.type
            if not (isinstance(t, TensorType) and isinstance(t.element_type, AnyFloat)):
                raise VerifyException(f"'{op.name}' needs a floating point tensor, got {t}")


@dataclass(frozen=True)
class ReductionWithCombiner(OpTrait):
    """Accumulates elements with `combiner`, starting from its identity."""

    combiner: Combiner


@dataclass(frozen=True)
class ArrayCanonicalization(HasCanonicalizationPatternsTrait):
    """The op's rewrite patterns, applied by `simplify` and by xDSL's `canonicalize`."""

    def get_patterns(self, op: type[Operation]) -> tuple[RewritePattern, ...]:
        from pullback.compiler.dialects.array_canonicalization import patterns_for

        return patterns_for(op)

    @classmethod
    def get_canonicalization_patterns(cls) -> tuple[RewritePattern, ...]:
        from pullback.compiler.dialects.array_canonicalization import PATTERNS

        return PATTERNS


@functools.cache
def _class_has(cls: type[Operation], trait: type[OpTrait]) -> bool:
    return cls.has_trait(trait)


def has(op: Operation | type[Operation], trait: type[OpTrait]) -> bool:
    """Whether `op` (an op or an op class) carries a trait of type `trait`."""
    return _class_has(op if isinstance(op, type) else type(op), trait)


def combiner_of(op: Operation | type[Operation]) -> Combiner:
    """The combiner of a reduction, scan or scatter op."""
    cls = op if isinstance(op, type) else type(op)
    trait = cls.get_trait(ReductionWithCombiner)
    if trait is None:
        raise TypeError(
            f"'{cls.name}' accumulates with no combiner (no ReductionWithCombiner trait)")
    return trait.combiner
