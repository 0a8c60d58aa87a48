"""`drop-derivative-terms`: forwarddiff regions' zero terms removed once AD is done.

A `pb.forwarddiff` region's value is traced as `y + (x - sg(x)) @ J^T`: the second
term is zero, and carries the region's Jacobian `J` to reverse-mode AD. Its
`array.add` is marked `pullback.forwarddiff` (`FORWARDDIFF_MARK`).

Input invariant: every AD pass has run (after this pass, further differentiation
would miss the region's derivative). Any module.

Output IR: each marked `array.add` is replaced by its first operand (`y`), so the
zero term (and the Jacobian, where only the value needs it) is not computed for the
value, and an infinite Jacobian entry cannot turn the value into NaN. No options.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from pullback.compiler.dialects.ad import FORWARDDIFF_MARK
from pullback.compiler.dialects.array import AddOp


def drop_derivative_terms(module: ModuleOp) -> None:
    """Replace each marked `array.add` by its value operand (module docstring)."""
    for op in list(module.walk()):
        if isinstance(op, AddOp) and FORWARDDIFF_MARK in op.attributes:
            op.result.replace_all_uses_with(op.lhs)
            op.detach()
            op.erase()


@dataclass(frozen=True)
class DropDerivativeTermsPass(ModulePass):
    """Drop the zero derivative terms of forwarddiff regions (module docstring)."""

    name = "drop-derivative-terms"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        drop_derivative_terms(op)
