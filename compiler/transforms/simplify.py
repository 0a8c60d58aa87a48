"""`simplify`: algebraic cleanup of `array` IR, mostly of what the AD passes emit.

Input invariant: any module. Output IR: the same module with every op's
canonicalization patterns applied until none matches, and ops left without a use
and without an effect erased. The patterns are those the ops' traits name (the
`array` ops' are in `dialects/array_canonicalization.py`): xDSL's `canonicalize` applies the
same ones and also folds and removes unreachable blocks. Run `cse` and `dce`
afterwards to drop what becomes unused.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)
from xdsl.traits import HasCanonicalizationPatternsTrait


@functools.cache
def canonicalization_patterns(cls: type[Operation]) -> tuple[RewritePattern, ...]:
    """The patterns the canonicalization traits of op class `cls` name, in order."""
    return tuple(pattern for trait in cls.get_traits_of_type(HasCanonicalizationPatternsTrait)
                 for pattern in trait.get_patterns(cls))


class ApplyOpPatterns(RewritePattern):
    """Tries an op's own canonicalization patterns in order; the first that rewrites wins."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /) -> None:
        for pattern in canonicalization_patterns(type(op)):
            pattern.match_and_rewrite(op, rewriter)
            if rewriter.has_done_action:
                return


@dataclass(frozen=True)
class SimplifyPass(ModulePass):
    """Apply the ops' canonicalization patterns until none matches (see the module docstring)."""

    name = "simplify"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(GreedyRewritePatternApplier([ApplyOpPatterns()])).rewrite_module(op)
