"""`host-call-status`: native code returns at the first host call that fails.

Input invariant: kernel-level IR (the output of `convert-kernels-to-loops`): host
functions (those with `pullback.num_inputs`) whose single block is a schedule of
calls, some to `pullback_host_call_<T>` (declared private, no result).

Output IR: each `pullback_host_call_<T>` returns an i32 status (0: go on; anything
else: the host function raised), and each host function returns an i32: after every
host call, `cf.cond_br` on the status either goes on with the rest of the schedule or
returns the status at once, so no later kernel runs; the end of the schedule returns
0. A target whose schedule is driven from the host (OpenCL) does not need this pass;
the CPU target runs it just before `convert-loops-to-llvm`.

`written_before_host_calls` says which written inputs a failing call can leave half
written: those some step before the last host call may write. Native code after the
last host call cannot fail, so the runtime need not keep a copy of the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, cf, func, memref
from xdsl.dialects.builtin import DenseArrayBase, FunctionType, IntegerAttr, ModuleOp, i32
from xdsl.ir import Block, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from pullback.compiler.dialects.kernel import HOST_CALL_PREFIX

_WRITTEN_OPERAND = {HOST_CALL_PREFIX: 5, "pullback_matmul_": 2}
"""The one buffer operand a call to a target function writes: a host call's `dst`, a
matrix product's `c` (`dialects.kernel.matmul_symbol`)."""


def _returns_status(fn: func.FuncOp) -> None:
    fn.function_type = FunctionType.from_lists(list(fn.function_type.inputs.data), [i32])


def _is_host_call(op: object) -> bool:
    return isinstance(op, func.CallOp) and op.callee.string_value().startswith(HOST_CALL_PREFIX)


def _check_statuses(host: func.FuncOp) -> None:
    """Give `host` an i32 result and return early after each failed host call (nothing
    if it returns its status already)."""
    outputs = host.function_type.outputs.data
    if outputs == (i32,):
        return
    if len(host.body.blocks) != 1 or outputs:
        raise ValueError(f"host-call-status needs @{host.sym_name.data} to be a host schedule: "
                         "one block and no results")
    entry = host.body.block
    _returns_status(host)
    zero = arith.ConstantOp(IntegerAttr(0, i32))
    ret = entry.last_op
    assert isinstance(ret, func.ReturnOp) and entry.first_op is not None
    entry.insert_op_before(zero, entry.first_op)
    Rewriter.replace_op(ret, func.ReturnOp(zero.result))
    calls = [op for op in entry.ops if _is_host_call(op)]
    if not calls:
        return
    failed = Block(arg_types=[i32])
    failed.add_op(func.ReturnOp(failed.args[0]))
    block = entry
    for old in calls:
        assert isinstance(old, func.CallOp)
        call = func.CallOp(old.callee, list(old.arguments), [i32])
        Rewriter.replace_op(old, call, [])
        assert call.next_op is not None  # the schedule ends in a return
        rest = block.split_before(call.next_op)
        status = call.res[0]
        nonzero = arith.CmpiOp(status, zero.result, "ne")
        block.add_ops([nonzero, cf.ConditionalBranchOp(nonzero, failed, [status], rest, [])])
        block = rest
    host.body.add_block(failed)


def written_before_host_calls(module: ModuleOp, name: str) -> tuple[int, ...]:
    """The written inputs of host function `@name` (kernel level) that a step before its
    last host call may write; () without host calls."""
    funcs = {f.sym_name.data: f for f in module.ops if isinstance(f, func.FuncOp)}
    host = funcs[name]
    attr = host.attributes.get("pullback.written_inputs")
    assert isinstance(attr, DenseArrayBase)
    written = {int(i) for i in attr.get_values()}
    calls = [op for op in host.body.block.ops if isinstance(op, func.CallOp)]
    hosts = [k for k, call in enumerate(calls) if _is_host_call(call)]
    if not hosts or not written:
        return ()
    buffers: dict[SSAValue, int] = {a: i for i, a in enumerate(host.body.block.args)}
    for op in host.body.block.ops:
        if isinstance(op, memref.CastOp) and op.source in buffers:
            buffers[op.dest] = buffers[op.source]
    found: set[int] = set()
    for call in calls[:hosts[-1]]:
        callee = call.callee.string_value()
        for position, value in enumerate(call.arguments):
            i = buffers.get(value)
            if i in written and _may_write(funcs.get(callee), callee, position):
                found.add(i)
    return tuple(sorted(found))


def _may_write(callee: func.FuncOp | None, symbol: str, position: int) -> bool:
    """Whether a call to `symbol` may write its buffer operand at `position`: a kernel
    that does more with it than load; a target function at its output operand."""
    for prefix, written in _WRITTEN_OPERAND.items():
        if symbol.startswith(prefix):
            return position == written
    if callee is None or callee.is_declaration:
        return True
    arg = callee.body.blocks[0].args[position]
    return any(not isinstance(use.operation, memref.LoadOp) for use in arg.uses)


@dataclass(frozen=True)
class HostCallStatusPass(ModulePass):
    """Return early from host functions when a host call fails (module docstring)."""

    name = "host-call-status"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in list(op.body.block.ops):
            if not isinstance(fn, func.FuncOp):
                continue
            if fn.is_declaration and fn.sym_name.data.startswith(HOST_CALL_PREFIX):
                if not fn.function_type.outputs.data:
                    _returns_status(fn)
            elif "pullback.num_inputs" in fn.attributes and not fn.is_declaration:
                _check_statuses(fn)
