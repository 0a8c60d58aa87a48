"""`convert-kernels-to-loops`: each buffer-form `kernel.fused` to a kernel function of loops.

Input invariant: host functions as `bufferize` writes them (buffer-form
`kernel.fused` steps, `memref.cast`, `func.call` to matrix products and host calls).

Output IR: each `kernel.fused` of host `@NAME` becomes `func.call @NAME__kI(reads...,
writes...)` to a new private function, numbered in schedule order, placed before the
host. Its arguments are the step's buffers (`llvm.noalias` on each buffer passed
once); its body is loops over them (`scf` with `memref.load/store`, `arith` and
`math` ops, index arithmetic in `index`), and it carries `pullback.kernel`, the
step's `kind`:

* a kernel with a domain is *fused*: one loop nest over the domain whose innermost
  body computes every value it needs once per element as scalar SSA values, stores
  the values it writes, and folds its reductions in as accumulators: carried by the
  loops over the reduced axes (stored when those loops close; the reduced axes are
  made innermost when the last axis is reduced) or, for reductions that keep the last
  axis, combined into the output buffer, which the kernel first fills with the
  identity (`conversion.fused_kernel`); stores listed in `late` come after every load
  of the iteration;
* a kernel without a domain computes its one special op (scan, scatter,
  concatenation, slice update, literal array) with the loops of `conversion.kernels`.

Loops whose iterations are independent, and reductions that may be split across
threads, are marked as the kernel-level contract says (`conversion.kernel_writer`).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr
from xdsl.passes import ModulePass

from pullback.compiler.conversion.bufferize import NOALIAS, inner_kernel
from pullback.compiler.conversion.element_emitter import ElementEmitter
from pullback.compiler.conversion.fused_kernel import build_fused_kernel
from pullback.compiler.conversion.kernel_writer import KERNEL_KIND, KernelWriter
from pullback.compiler.conversion.kernels import build_kernel
from pullback.compiler.diagnostics import located
from pullback.compiler.dialects.kernel import FusedOp


def _outline(host: func.FuncOp, op: FusedOp, index: int) -> func.FuncOp:
    """The kernel function computing buffer-form `op`; `op` becomes a call to it."""
    if not op.is_buffered:
        raise ValueError(located(op, "convert-kernels-to-loops: kernel.fused is in tensor "
                                     "form; run bufferize first"))
    buffers = [*op.inputs, *op.outputs]
    attrs = ArrayAttr([NOALIAS if buffers.count(b) == 1 else DictionaryAttr({})
                       for b in buffers])
    kernel = func.FuncOp(f"{host.sym_name.data}__k{index}", ([b.type for b in buffers], []),
                         visibility="private", arg_attrs=attrs)
    kernel.attributes[KERNEL_KIND] = StringAttr(op.kind.data)
    kw = KernelWriter(kernel)
    args = kernel.body.block.args
    n = len(op.inputs)
    emitter = ElementEmitter(kw, dict(zip(op.block.args, args[:n], strict=True)))
    if op.domain is not None:
        build_fused_kernel(emitter, inner_kernel(op), dict(zip(op.yielded, args[n:], strict=True)))
    else:
        build_kernel(emitter, op.yielded[0].owner, args[n])  # type: ignore[arg-type]
    kw.add(func.ReturnOp())
    call = func.CallOp(kernel.sym_name.data, buffers, [])
    call.location = op.location
    block = op.parent_block()
    assert block is not None
    block.insert_op_before(call, op)
    op.detach()
    op.erase()
    return kernel


@dataclass(frozen=True)
class ConvertKernelsToLoopsPass(ModulePass):
    """Outline every `kernel.fused` into a kernel function of loops (module docstring)."""

    name = "convert-kernels-to-loops"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for host in list(op.body.block.ops):
            if not isinstance(host, func.FuncOp) or host.is_declaration:
                continue
            steps = [s for s in host.body.block.ops if isinstance(s, FusedOp)]
            for i, step in enumerate(steps):
                op.body.block.insert_op_before(_outline(host, step, i), host)
