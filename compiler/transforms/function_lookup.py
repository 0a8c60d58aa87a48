"""Finding the function a pass option names, with an error that lists the others."""

from __future__ import annotations

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp


def function_named(module: ModuleOp, name: str, pass_name: str) -> func.FuncOp:
    """The function `@name` of `module` with a body; `pass_name` is the pass asking."""
    funcs = [op for op in module.ops if isinstance(op, func.FuncOp)]
    for f in funcs:
        if f.sym_name.data == name:
            if not f.body.blocks:
                raise ValueError(f"{pass_name}: @{name} is a declaration (no body)")
            return f
    have = ", ".join("@" + f.sym_name.data for f in funcs) or "none"
    what = f"no function @{name}" if name else "the option func=NAME is required"
    raise ValueError(f"{pass_name}: {what}; functions in the module: {have}")
