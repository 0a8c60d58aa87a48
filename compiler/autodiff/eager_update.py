"""The `drop-eager-updates` pass: compiled optimiser steps, once differentiation is done.

An `ad.eager_update` op is the identity on its parameter in the forward pass. The
reverse pass (its VJP rule in `rules/ad.py`) has already put the step where the
parameter's gradient is complete: the region inlined on that gradient, its results
written to the parameter and optimiser-state arguments by `array.assign`, and no
gradient result for the parameter. What is left is the forward identity, which this
pass removes, as the second pass of every device's lowering.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from pullback.compiler.dialects.ad import EagerUpdateOp


def drop_eager_updates(module: ModuleOp) -> None:
    """Replace every `ad.eager_update` by its parameter (innermost first)."""
    for op in reversed(list(module.walk())):
        if isinstance(op, EagerUpdateOp):
            op.result.replace_all_uses_with(op.param)
            op.detach()
            op.erase()


@dataclass(frozen=True)
class EagerUpdatePass(ModulePass):
    """Remove the `ad.eager_update` identities left after AD (module docstring).

    Input invariant: the AD passes have run (the reverse pass has emitted each update
    and its `array.assign`s). Output IR: no `ad.eager_update` op.
    """

    name = "drop-eager-updates"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        drop_eager_updates(op)
