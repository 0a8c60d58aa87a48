"""`convert-array-to-loops`: the lowering from array functions to loop kernels, as one pass.

It runs, in order, the passes each device's lowering lists one by one:
`inline-checkpoints`, `drop-eager-updates`, `drop-identities`, `schedule-writes`,
`fuse`, `bufferize` and `convert-kernels-to-loops` (see each for its input invariant
and output). Input: array functions after AD. Output: kernel-level IR, host
functions over flat buffers calling one kernel function per `kernel.fused`.

The option `function` lowers only that function and erases every other one (as
`keep-functions{names=...}` would); empty lowers every array function.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from pullback.compiler.autodiff.checkpoint import CheckpointPass
from pullback.compiler.autodiff.eager_update import EagerUpdatePass
from pullback.compiler.conversion.bufferize import BufferizePass
from pullback.compiler.conversion.kernels_to_loops import ConvertKernelsToLoopsPass
from pullback.compiler.transforms.drop_identities import DropIdentitiesPass
from pullback.compiler.transforms.fuse import FusePass
from pullback.compiler.transforms.schedule_writes import ScheduleWritesPass

STEPS: tuple[type[ModulePass], ...] = (
    CheckpointPass, EagerUpdatePass, DropIdentitiesPass, ScheduleWritesPass, FusePass,
    BufferizePass, ConvertKernelsToLoopsPass)
"""The passes `convert-array-to-loops` runs, in order."""


@dataclass(frozen=True)
class ConvertArrayToLoopsPass(ModulePass):
    """Lower array functions to kernel-level IR by the passes of `STEPS` (module docstring)."""

    name = "convert-array-to-loops"

    function: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.function:
            funcs = [f for f in op.body.block.ops if isinstance(f, func.FuncOp)]
            if not any(f.sym_name.data == self.function for f in funcs):
                names = ", ".join(f.sym_name.data for f in funcs)
                raise ValueError(f"no function @{self.function} in the module (has: {names})")
            for f in funcs:
                if f.sym_name.data != self.function:
                    f.detach()
                    f.erase()
        for step in STEPS:
            step().apply(ctx, op)
