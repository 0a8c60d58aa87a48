"""What both AD passes share: picking functions, typing values, adding results."""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects import func
from xdsl.dialects.builtin import AnyFloat, ModuleOp, StringAttr, TensorType
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from pullback.compiler.dialects.array import i64_array

DERIVATIVE = "pullback.derivative"
"""Attribute naming the kind of derivative a function is ("vjp", "jvp")."""


def is_float(value: SSAValue | Attribute) -> bool:
    """Whether a value (or type) is a floating-point tensor or scalar."""
    t = value.type if isinstance(value, SSAValue) else value
    el = t.element_type if isinstance(t, TensorType) else t
    return isinstance(el, AnyFloat)


def selected_functions(module: ModuleOp, name: str) -> list[func.FuncOp]:
    """The function called `name`, or, if `name` is empty, every non-derivative one."""
    funcs = [op for op in module.ops if isinstance(op, func.FuncOp)]
    if not name:
        return [f for f in funcs if DERIVATIVE not in f.attributes and f.body.blocks]
    for f in funcs:
        if f.sym_name.data == name:
            if not f.body.blocks:
                raise ValueError(f"@{name} is a declaration; it has no body to differentiate")
            return [f]
    raise ValueError(
        f"no function @{name} to differentiate; the module has "
        f"{', '.join('@' + f.sym_name.data for f in funcs) or 'no functions'}"
    )


def body_of(f: func.FuncOp) -> tuple[Block, list[Operation], func.ReturnOp]:
    """The single block of `f`, its ops before the return, and the return."""
    if len(f.body.blocks) != 1:
        raise ValueError(f"@{f.sym_name.data} must have a single block to be differentiated")
    block = f.body.block
    ret = block.last_op
    if not isinstance(ret, func.ReturnOp):
        raise ValueError(f"@{f.sym_name.data} must end in func.return")
    return block, [op for op in block.ops if op is not ret], ret


def clone_into(block: Block, op: Operation, mapping: dict[SSAValue, SSAValue]) -> Operation:
    """Append a copy of `op` to `block`, remapping operands; records its results."""
    new = op.clone(mapping) if op.regions else op.clone_without_regions(mapping)
    block.add_op(new)
    return new


def add_function(module: ModuleOp, after: func.FuncOp, name: str, block: Block,
                 outputs: Sequence[SSAValue], attributes: dict[str, Attribute]) -> func.FuncOp:
    """Finish `block` with a return of `outputs` and insert it as @`name` after `after`."""
    if any(isinstance(op, func.FuncOp) and op.sym_name.data == name for op in module.ops):
        raise ValueError(f"cannot add @{name}: the module already has a function of that name")
    block.add_op(func.ReturnOp(*outputs))
    f = func.FuncOp(
        name, ([a.type for a in block.args], [v.type for v in outputs]), Region(block)
    )
    f.attributes.update(attributes)
    module.body.block.insert_op_after(f, after)
    return f


def derivative_attrs(kind: str, **indices: Sequence[int]) -> dict[str, Attribute]:
    """`pullback.derivative = kind` plus one `pullback.<key> = array<i64: ...>` per key."""
    attrs: dict[str, Attribute] = {DERIVATIVE: StringAttr(kind)}
    for key, values in indices.items():
        attrs[f"pullback.{key}"] = i64_array(values)
    return attrs
