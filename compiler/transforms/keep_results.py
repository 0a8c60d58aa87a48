"""`keep-results{func=F results=i,j}`: one function made to return some of its results.

Input invariant: `@F` exists, its body is one block ending in `func.return`, and
`results` are indices of its results (negative ones count from the end, as in
Python).

Output IR: `@F` returns the results at `results`, in that order (an index may
repeat); its type says so. The ops that computed the dropped results stay (run
`dce` to remove them). Callers of `@F` are not updated: run it on entry functions
only.

Options: `func` (required), `results` (indices; none: `@F` returns nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp
from xdsl.passes import ModulePass

from pullback.compiler.transforms.function_lookup import function_named


def keep_results(fn: func.FuncOp, results: Sequence[int]) -> None:
    """Make `fn` return only its results at `results` (module docstring)."""
    ret = fn.body.block.last_op
    name = fn.sym_name.data
    if not isinstance(ret, func.ReturnOp):
        raise ValueError(f"keep-results: @{name} must end in func.return")
    count = len(ret.arguments)
    if any(not -count <= k < count for k in results):
        raise ValueError(f"keep-results: @{name} has {count} results (indices 0..{count - 1}, "
                         f"or -{count}..-1 from the end); results must be among them, got "
                         f"{list(results)}")
    values = [ret.arguments[k] for k in results]
    fn.body.block.insert_op_before(func.ReturnOp(*values), ret)
    ret.detach()
    ret.erase()
    fn.function_type = FunctionType.from_lists(
        list(fn.function_type.inputs.data), [v.type for v in values])


@dataclass(frozen=True)
class KeepResultsPass(ModulePass):
    """Make `@func` return only its results at `results` (module docstring)."""

    name = "keep-results"
    func: str = ""
    results: tuple[int, ...] = ()

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        keep_results(function_named(op, self.func, self.name), self.results)
