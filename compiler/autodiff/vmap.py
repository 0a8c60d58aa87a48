"""Batching: `vmap` adds `@F_vmap`, `@F` evaluated for B values of some arguments at once.

Input invariant: `@F` is a single-block function of `array` ops ending in `func.return`.

Output IR: `@F_vmap` takes the arguments listed in `args` with a leading dimension
of size `size` (B) and the others unchanged. A value computed from a batched
argument gains the batch dimension (each op through its rule in `rules/batch.py`);
every other value is computed once, unbatched, exactly as in `@F`. That is what
makes a batched pullback cheap: the primal part is shared by every batch element.
Results that depend on no batched argument are broadcast to the batch, so that
every result of `@F_vmap` is stacked alike; with `broadcast=false` they keep their
own shape instead. `pullback.batched_results` lists the results that are stacked
(all of them unless `broadcast=false`), `pullback.batched_args` the batched
arguments and `pullback.batch_size` B.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, StringAttr, TensorType, i64
from xdsl.ir import Attribute, Block, SSAValue
from xdsl.passes import ModulePass

from pullback.compiler.autodiff.forward_region import expand_forward_regions
from pullback.compiler.autodiff.functions import (
    DERIVATIVE,
    add_function,
    body_of,
    clone_into,
    selected_functions,
)
from pullback.compiler.autodiff.rules.batch import BatchEmitter, batch_rule
from pullback.compiler.dialects.array import element_type_of, i64_array, shape_of


def _check_args(f: func.FuncOp, args: Sequence[int], size: int) -> None:
    name, n = f.sym_name.data, len(f.body.block.args)
    if not args:
        raise ValueError(f"vmap of @{name} needs at least one argument to batch (args=...)")
    bad = [i for i in args if not 0 <= i < n]
    if bad or len(set(args)) != len(args):
        raise ValueError(
            f"vmap of @{name}: args {list(args)} must be distinct indices below {n}")
    if size < 1:
        raise ValueError(f"vmap of @{name} needs a batch size of at least 1, got {size}")
    for i in args:
        if not isinstance(f.body.block.args[i].type, TensorType):
            raise ValueError(f"vmap of @{name}: argument {i} is not a tensor")


def _batched_attrs(f: func.FuncOp, args: Sequence[int], size: int,
                   batched_results: Sequence[int]) -> dict[str, Attribute]:
    """`@F`'s own `pullback.*` attributes (a derivative stays one) plus the batching."""
    attrs: dict[str, Attribute] = {
        k: v for k, v in f.attributes.items() if k.startswith("pullback.")
    }
    attrs.setdefault(DERIVATIVE, StringAttr("vmap"))
    attrs["pullback.batched_args"] = i64_array(args)
    attrs["pullback.batched_results"] = i64_array(batched_results)
    attrs["pullback.batch_size"] = IntegerAttr(size, i64)
    return attrs


def build_vmap(module: ModuleOp, f: func.FuncOp, args: Sequence[int], size: int,
               broadcast: bool = True) -> func.FuncOp:
    """Add `@<f>_vmap`, batched over the arguments `args` with batch size `size`."""
    _check_args(f, args, size)
    expand_forward_regions(f)
    block, ops, ret = body_of(f)
    types = [
        TensorType(element_type_of(a), [size, *shape_of(a)]) if i in args else a.type
        for i, a in enumerate(block.args)
    ]
    new = Block(arg_types=types)
    e = BatchEmitter(new, size)
    mapping: dict[SSAValue, SSAValue] = dict(zip(block.args, new.args, strict=True))
    batched = {new.args[i] for i in args}

    for op in ops:
        operands = [mapping.get(v, v) for v in op.operands]
        flags = tuple(v in batched for v in operands)
        if not any(flags):
            clone_into(new, op, mapping)
            continue
        if len(op.results) != 1:
            batch_rule(op)(e, op, operands, flags)  # a rule may refuse with its reason
            raise NotImplementedError(f"vmap handles ops with one result, not '{op.name}'")
        with e.at(op.location):
            out = batch_rule(op)(e, op, operands, flags)
        want = (size, *shape_of(op.results[0]))
        if shape_of(out) != want:
            raise AssertionError(
                f"the batching rule of '{op.name}' gave shape {shape_of(out)}, not {want}")
        mapping[op.results[0]] = out
        batched.add(out)

    outputs: list[SSAValue] = []
    stacked: list[int] = []
    for k, r in enumerate(ret.arguments):
        v = mapping.get(r, r)
        if v not in batched and broadcast:
            v = e.lift(v, False)
        if v in batched or broadcast:
            stacked.append(k)
        outputs.append(v)
    attrs = _batched_attrs(f, args, size, stacked)
    return add_function(module, f, f.sym_name.data + "_vmap", new, outputs, attrs)


@dataclass(frozen=True)
class VmapPass(ModulePass):
    """Batch `func` over the arguments `args` with batch size `size`."""

    name = "vmap"
    func: str = ""
    args: tuple[int, ...] = ()
    size: int = 1
    broadcast: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if not self.func:
            raise ValueError("vmap needs the function to batch: vmap{func=NAME args=I,J size=B}")
        for f in selected_functions(op, self.func):
            build_vmap(op, f, self.args, self.size, self.broadcast)
