"""`drop-identities`: the ops that are the identity once AD is done, removed.

`ad.stop_gradient`, `ad.callback` and `ad.hook` only matter to differentiation: the
AD passes read them (no gradient through a stop, a host call on the cotangent for a
callback or hook). Afterwards each is the identity on its operand.

Input invariant: the AD passes have run (or the module has no derivative to build).
Output IR: no `ad.stop_gradient`, `ad.callback` or `ad.hook` op; the uses of each read
its operand (innermost first: a hook's region goes with it).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from pullback.compiler.dialects.ad import CallbackOp, HookOp, StopGradientOp


def drop_identities(module: ModuleOp) -> None:
    """Replace each `ad.stop_gradient`, `ad.callback` and `ad.hook` by its operand."""
    for op in reversed(list(module.walk())):
        if isinstance(op, StopGradientOp | CallbackOp | HookOp):
            op.result.replace_all_uses_with(op.operand)
            op.detach()
            op.erase()


@dataclass(frozen=True)
class DropIdentitiesPass(ModulePass):
    """Remove the ops that are the identity after AD (module docstring)."""

    name = "drop-identities"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        drop_identities(op)
