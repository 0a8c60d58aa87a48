"""Reverse mode: `autodiff` adds `@f_vjp(args..., cotangents...) -> (results..., grads...)`.

The body is the primal (cloned), then `ad.reverse_begin`, then one sweep over the
active ops in reverse order that calls each op's VJP rule and accumulates gradients
with `array.add` (an op whose result gets no cotangent, active or not, is offered to
its *unreached* rule, if it has one: see `rules.ad.UNREACHED_RULES`).
Activity: a value is active when it is a float tensor computed from a float
argument; rules are asked only for active operands. An argument whose adjoint
stays empty (no path to a result, or only through compare, select conditions or
integer conversions) gets no gradient result; `pullback.wrt` lists those that do.
Differentiating a derivative again (second order) drops the cloned primal's own
`ad.reverse_begin`: the one before the new sweep is the function's only one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass

from pullback.compiler.autodiff.emit import Emitter
from pullback.compiler.autodiff.forward_region import expand_forward_regions
from pullback.compiler.autodiff.functions import (
    add_function,
    body_of,
    clone_into,
    derivative_attrs,
    is_float,
    selected_functions,
)
from pullback.compiler.autodiff.rules import vjp_rule
from pullback.compiler.autodiff.rules.ad import unreached_rule
from pullback.compiler.dialects.ad import ReverseBeginOp
from pullback.compiler.dialects.array import shape_of


def _accumulate(e: Emitter, adjoints: dict[SSAValue, SSAValue], value: SSAValue,
                grad: SSAValue) -> None:
    old = adjoints.get(value)
    adjoints[value] = grad if old is None else e.add(old, grad)


def _check_indices(f: func.FuncOp, what: str, chosen: Sequence[int], allowed: list[int]) -> None:
    bad = [i for i in chosen if i not in allowed]
    if bad:
        raise ValueError(
            f"autodiff of @{f.sym_name.data}: {what} {bad} are not floating-point; "
            f"allowed: {allowed}")


def build_vjp(module: ModuleOp, f: func.FuncOp, wrt: Sequence[int] = (),
              cotangents: Sequence[int] = (), seed: bool = False) -> func.FuncOp:
    """Add `@<f>_vjp` next to `f` and return it.

    `wrt` limits the arguments differentiated (default: every float argument);
    `cotangents` limits the results that take a cotangent (default: every float
    result); with `seed`, those results must be scalars and their cotangent is the
    constant 1 instead of an argument.
    """
    expand_forward_regions(f)
    block, ops, ret = body_of(f)
    results = list(ret.arguments)
    float_results = [i for i, r in enumerate(results) if is_float(r)]
    float_args = [i for i, a in enumerate(block.args) if is_float(a)]
    _check_indices(f, "results", cotangents, float_results)
    _check_indices(f, "arguments", wrt, float_args)
    takes_cotangent = list(cotangents) if cotangents else float_results
    if seed and any(shape_of(results[i]) != () for i in takes_cotangent):
        raise ValueError(f"autodiff{{seed}} of @{f.sym_name.data} needs scalar results")
    n = len(block.args)
    seeded = [] if seed else takes_cotangent
    new = Block(arg_types=[a.type for a in block.args] + [results[i].type for i in seeded])
    e = Emitter(new)
    mapping: dict[SSAValue, SSAValue] = dict(zip(block.args, new.args[:n], strict=True))
    active = {new.args[i] for i in (wrt or float_args)}

    tape: list[Operation] = []
    for op in ops:
        if isinstance(op, ReverseBeginOp):
            continue
        clone = clone_into(new, op, mapping)
        live = [r for r in clone.results if is_float(r)]
        if live and any(v in active for v in clone.operands):
            active.update(live)
            tape.append(clone)
        elif unreached_rule(clone) is not None:
            tape.append(clone)  # inactive, but it acts when it gets no cotangent
    new.add_op(ReverseBeginOp())

    adjoints: dict[SSAValue, SSAValue] = {}
    for k, i in enumerate(takes_cotangent):
        value = mapping.get(results[i], results[i])
        if value in active:
            ct = e.full(1.0, value) if seed else new.args[n + k]
            _accumulate(e, adjoints, value, ct)

    for op in reversed(tape):
        g = adjoints.pop(op.results[0], None)
        with e.at(op.location):
            if g is None:
                unreached = unreached_rule(op)
                if unreached is not None:
                    unreached(e, op)
                continue
            needs = tuple(v in active for v in op.operands)
            grads = vjp_rule(op)(e, op, g, needs)
            for v, need, grad in zip(op.operands, needs, grads, strict=True):
                if need and grad is not None:
                    _accumulate(e, adjoints, v, grad)

    has_grad = [i for i, a in enumerate(new.args[:n]) if a in adjoints]
    outputs = [mapping.get(r, r) for r in results] + [adjoints[new.args[i]] for i in has_grad]
    attrs = derivative_attrs("vjp", wrt=has_grad, cotangents=seeded)
    return add_function(module, f, f.sym_name.data + "_vjp", new, outputs, attrs)


@dataclass(frozen=True)
class AutodiffPass(ModulePass):
    """Reverse-mode AD of `func` (default: every function not itself a derivative)."""

    name = "autodiff"
    func: str = ""
    wrt: tuple[int, ...] = ()
    cotangents: tuple[int, ...] = ()
    seed: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for f in selected_functions(op, self.func):
            build_vjp(op, f, self.wrt, self.cotangents, self.seed)
