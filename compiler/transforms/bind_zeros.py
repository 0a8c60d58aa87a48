"""`bind-zeros{func=F args=i,j}`: arguments of one function bound to structural zeros.

Input invariant: `@F` exists, has a body of one block, and `args` are indices of its
block arguments (tensors). Typically `@F` is a derivative whose tangents for some
arguments are known to be zero (a Hessian's `jvp` takes tangents of every float
argument; those of arguments not differentiated are zero).

Output IR: `@F` no longer takes the arguments at `args`; each one's uses read an
`array.full 0` of its type, marked as an AD zero (`pullback.zero`), placed at the
start of the body, so `simplify` folds the work it feeds. The function's type loses
those inputs; every other function is unchanged. Callers of `@F` are not updated:
run it on entry functions only.

Options: `func` (required), `args` (indices, in any order; each at most once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp, UnitAttr
from xdsl.passes import ModulePass

from pullback.compiler.dialects.array import ZERO_MARK, FullOp
from pullback.compiler.transforms.function_lookup import function_named


def bind_zeros(fn: func.FuncOp, positions: Sequence[int]) -> None:
    """Remove the arguments of `fn` at `positions`, binding each to a structural zero
    (an `array.full 0` marked as an AD zero, so `simplify` folds the work it feeds)."""
    block = fn.body.block
    count = len(block.args)
    bad = [p for p in positions if not 0 <= p < count]
    if bad or len(set(positions)) != len(positions):
        raise ValueError(f"bind-zeros: @{fn.sym_name.data} has arguments 0..{count - 1}; "
                         f"args must be distinct indices among them, got {list(positions)}")
    for p in sorted(positions, reverse=True):
        arg = block.args[p]
        zero = FullOp(0, arg.type)  # type: ignore[arg-type]
        zero.attributes[ZERO_MARK] = UnitAttr()
        block.insert_op_before(zero, block.first_op)  # type: ignore[arg-type]
        arg.replace_all_uses_with(zero.result)
        block.erase_arg(arg)
    fn.function_type = FunctionType.from_lists(
        [a.type for a in block.args], list(fn.function_type.outputs.data))


@dataclass(frozen=True)
class BindZerosPass(ModulePass):
    """Bind arguments `args` of `@func` to structural zeros (module docstring)."""

    name = "bind-zeros"
    func: str = ""
    args: tuple[int, ...] = ()

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        bind_zeros(function_named(op, self.func, self.name), self.args)
