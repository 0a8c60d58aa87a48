"""`keep-functions{names=f,g}`: every other function erased from the module.

Input invariant: a module whose functions `names` exist and do not call functions
outside `names` (after the AD passes, an entry derivative calls nothing).

Output IR: the module holds only the functions named in `names` (in their order in
the module); every other `func.func` is erased. Other top-level ops are kept.

Options: `names` (function names; at least one).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass


@dataclass(frozen=True)
class KeepFunctionsPass(ModulePass):
    """Erase every function not in `names` (module docstring)."""

    name = "keep-functions"
    names: tuple[str, ...] = ()

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        funcs = [f for f in op.ops if isinstance(f, func.FuncOp)]
        present = {f.sym_name.data for f in funcs}
        missing = [n for n in self.names if n not in present]
        if not self.names or missing:
            have = ", ".join(sorted(present)) or "none"
            raise ValueError(f"keep-functions: names must list functions of the module "
                             f"({have}); missing: {', '.join(missing) or 'no names given'}")
        for f in funcs:
            if f.sym_name.data not in self.names:
                f.detach()
                f.erase()
