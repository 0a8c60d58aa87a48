"""`fuse`: the fusion decision written as IR, one `kernel.fused` op per kernel.

Input invariant: array functions (every argument and result a tensor) of one block
holding `array` ops, `ad.callback_grad`, at most one `ad.reverse_begin`, and
`func.return`: no `ad.checkpoint`, `ad.eager_update`, `ad.forward` or identity op
(`inline-checkpoints`, `drop-eager-updates`, `drop-identities` remove them), and
writes scheduled (`schedule-writes`).

Output IR: each function body is its schedule, in order. `transforms.fusion` decides
which values get a buffer and which kernel computes them; each kernel becomes

* a fused kernel: `kernel.fused` in tensor form with a `domain`; its operands are
  the stored values it reads, its region computes every value it stores and every
  reduction it folds in, from those values only (ops a value needs are copied into
  each kernel that computes it, so cheap values are recomputed rather than stored; a
  reduction of a same-kind reduction becomes one reduction over the union of their
  axes); its results are those values;
* a special op (scan, scatter, concatenation, slice update, literal array): a
  `kernel.fused` without a domain, whose region ends in that op;
* a matrix product: the `array.matmul` itself; an operand that swaps the last two
  dimensions of a stored value is a `array.transpose` just before it (the product
  reads the stored value with a flag);
* a host call: the `ad.callback_grad` itself.

The `array.assign`s follow the schedule, then `func.return`; ops no result depends on
are gone. A function that already holds `kernel.fused` ops is left as it is (fusing
twice changes nothing). When the function had an `ad.reverse_begin`, it is dropped, the function
gets `pullback.reverse_sweep` and each step `pullback.forward` (the indices of its
results computed before the marker): `bufferize` reads them to tell residuals
from scratch (`transforms.memory_kinds`).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, UnitAttr
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from pullback.compiler.diagnostics import located
from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.ad import CallbackGradOp, ReverseBeginOp
from pullback.compiler.dialects.kernel import FusedOp, YieldOp
from pullback.compiler.transforms.fusion import Kernel, is_matmul_transpose, plan_fusion
from pullback.compiler.transforms.memory_kinds import (
    FORWARD,
    REVERSE_SWEEP,
    split_at_reverse_begin,
)

_AD_KEPT = (CallbackGradOp, ReverseBeginOp)
_BEFORE = {
    "ad.checkpoint": "inline-checkpoints",
    "ad.eager_update": "drop-eager-updates",
    "ad.stop_gradient": "drop-identities",
    "ad.callback": "drop-identities",
    "ad.hook": "drop-identities",
    "ad.forward": "expand-forward",
}


def is_array_function(op: func.FuncOp) -> bool:
    """Every argument and result is a tensor (a function of no arrays returning none,
    as traced from constant outputs, too); kernels and host functions take memrefs."""
    t = op.function_type
    return all(isinstance(x, TensorType) for x in (*t.inputs, *t.outputs))


def _check_input(function: func.FuncOp) -> None:
    for op in function.body.block.ops:
        if op.dialect_name() == "ad" and not isinstance(op, _AD_KEPT):
            needed = _BEFORE.get(op.name)
            hint = f"; run {needed} first" if needed else ""
            raise ValueError(located(op, f"fuse: @{function.sym_name.data} still holds "
                                         f"'{op.name}'{hint}"))
        if op.regions and not isinstance(op, func.FuncOp):
            raise ValueError(located(op, f"fuse: '{op.name}' has a region; fuse takes "
                                         "functions of one block of array ops"))


def _copy_cone(roots: list[SSAValue], mapper: dict[SSAValue, SSAValue], block: Block) -> None:
    """Copy into `block` the ops computing `roots` from the values `mapper` holds,
    operands first (no recursion: a chain of any depth is copied)."""
    stack = [(v, False) for v in reversed(roots)]
    while stack:
        v, ready = stack.pop()
        if v in mapper:
            continue
        op = v.owner
        if not isinstance(op, Operation):
            raise AssertionError(f"fuse: kernel reads argument {v} it does not list")
        if not ready:
            stack.append((v, True))
            stack.extend((o, False) for o in reversed(op.operands) if o not in mapper)
            continue
        block.add_op(op.clone(value_mapper=mapper))


def _kind(kernel: Kernel) -> str:
    if kernel.op is None:
        if kernel.stores and kernel.reductions:
            return "fused"
        return "reduce" if kernel.reductions else "elementwise"
    match kernel.op:
        case A.CumsumOp():
            return "scan"
        case A.ScatterAddOp():
            return "scatter"
        case _:
            return "copy"


def _fused_op(kernel: Kernel, reads: list[SSAValue]) -> FusedOp:
    """The tensor-form `kernel.fused` of a fused or special kernel, reading `reads`
    (the kernel's reads as the schedule now names them)."""
    block = Block(arg_types=[v.type for v in kernel.reads])
    mapper: dict[SSAValue, SSAValue] = dict(zip(kernel.reads, block.args, strict=True))
    if kernel.op is None:
        _copy_cone([*kernel.stores, *(r.source for r in kernel.reductions)], mapper, block)
        written = [mapper[v] for v in kernel.stores]
        for red in kernel.reductions:
            if red.source is red.op.operand:
                op = red.op.clone(value_mapper=mapper)
            else:
                op = type(red.op)(mapper[red.source], red.axes)
                op.location = red.op.location
            block.add_op(op)
            written.append(op.result)
        domain: tuple[int, ...] | None = kernel.domain
        stores = len(kernel.stores)
    else:
        _copy_cone(list(kernel.op.results[:1]), mapper, block)
        written, domain, stores = [mapper[kernel.op.results[0]]], None, 0
    block.add_op(YieldOp(written))
    return FusedOp(reads, [], [v.type for v in kernel.outputs], Region(block),
                   kind=_kind(kernel), domain=domain, stores=stores)


def fuse_function(function: func.FuncOp) -> None:
    """Rewrite `function`'s body as its schedule of kernels (module docstring)."""
    _check_input(function)
    forward = split_at_reverse_begin(function)
    plan = plan_fusion(function)
    block = function.body.block
    ret = block.last_op
    assert isinstance(ret, func.ReturnOp)
    original = [op for op in block.ops if op is not ret]
    renamed: dict[SSAValue, SSAValue] = {}
    steps: list[Operation] = []
    for kernel in plan.kernels:
        if isinstance(kernel.op, A.MatmulOp | CallbackGradOp):
            step = kernel.op
            step.detach()
            if isinstance(step, A.MatmulOp):
                for i, v in enumerate((step.lhs, step.rhs)):
                    if is_matmul_transpose(v):
                        flag = v.owner.clone()  # type: ignore[union-attr]
                        block.insert_op_before(flag, ret)
                        step.operands[i] = flag.results[0]
            block.insert_op_before(step, ret)
            new = list(step.results)
        else:
            step = _fused_op(kernel, [renamed.get(v, v) for v in kernel.reads])
            step.location = kernel.outputs[0].owner.location  # type: ignore[union-attr]
            block.insert_op_before(step, ret)
            new = list(step.results)
            renamed.update(zip(kernel.outputs, new, strict=True))
        if forward is not None:
            step.attributes[FORWARD] = A.i64_array(
                [i for i, v in enumerate(kernel.outputs) if v in forward])
        steps.append(step)
    for old, new in renamed.items():
        old.replace_all_uses_with(new)
    for op in original:
        if isinstance(op, A.AssignOp):
            op.detach()
            block.insert_op_before(op, ret)
    kept = set(steps)
    for op in reversed(original):
        if op in kept or isinstance(op, A.AssignOp):
            continue
        if any(r.uses for r in op.results):
            raise AssertionError(located(op, f"fuse: '{op.name}' is still read after fusion"))
        op.detach()
        op.erase()
    if forward is not None:
        function.attributes[REVERSE_SWEEP] = UnitAttr()


@dataclass(frozen=True)
class FusePass(ModulePass):
    """Write the fusion decision as `kernel.fused` ops (module docstring)."""

    name = "fuse"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for f in list(op.body.block.ops):
            if (isinstance(f, func.FuncOp) and is_array_function(f) and not f.is_declaration
                    and not any(isinstance(o, FusedOp) for o in f.body.block.ops)):
                fuse_function(f)

