"""`gradient` and `withgradient` called while a function is being traced.

Inside a traced function (`pb.compile`, or the function of an outer `pb.gradient`,
`pb.jacobian`, ...) the derivative is not computed by a separate native call: it is
emitted into the enclosing trace, so the enclosing compiled function computes it.

`f(*args)` is recorded into a region of the active trace with one region input per
numeric argument leaf (integer arrays keep their dtype, carried by a float64 input
with a shadow, and Python integers are promoted, as for a top-level call);
boolean masks and static leaves are passed to `f` unchanged, and every value `f`
closes over (outer traced values, closed-over arrays) becomes a further input of the
region function `@gradient_region(args..., captured...)`. Reverse mode over that
function, with respect to the argument inputs only and seeded at the first output,
gives `@gradient_region_vjp`; a copy of it is inlined into the trace, bound to the
outer values. Closed-over values get no derivative from this gradient, but the inlined
code reads their real values, so a differentiation of the enclosing function sees
how the gradient depends on them (second derivatives compose this way).

A `pb.forwarddiff` region inside `f` has a Jacobian that is constant to further
differentiation: its ops in the inlined derivative carry `DIFFERENTIATED_MARK`, and
`check_not_differentiated` turns a second differentiation of them into an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, UnitAttr
from xdsl.ir import Region, SSAValue

from pullback.compiler.autodiff.reverse import build_vjp
from pullback.compiler.context import make_context
from pullback.compiler.dialects.ad import FORWARDDIFF_MARK
from pullback.compiler.passes import get_pass
from pullback.dsl import core, dtypes, integer_shadow
from pullback.dsl.pytree import flatten
from pullback.dsl.regions import capture
from pullback.dsl.trace import Trace
from pullback.dsl.tracer import Tracer
from pullback.params import Params
from pullback.program import DIFF, MASK, Program, ResultIndex, classify

REGION_NAME = "gradient_region"

DIFFERENTIATED_MARK = "pullback.differentiated_forwarddiff"
"""Unit attribute on the forwarddiff ops of an inlined traced gradient."""


def check_not_differentiated(module: ModuleOp) -> None:
    """Raise if `module` holds a traced gradient through a `pb.forwarddiff` region: a
    further derivative of it would silently treat the region's Jacobian as constant."""
    for op in module.walk():
        if DIFFERENTIATED_MARK in op.attributes:
            raise NotImplementedError(
                "second derivatives through pb.forwarddiff are not supported: a gradient "
                "inside a traced function was taken through a forwarddiff region, whose "
                "Jacobian is a constant to further differentiation; differentiate that "
                "gradient without pb.forwarddiff")


def not_in_trace(fname: str) -> NotImplementedError:
    """The error for a derivative API that has no traced form."""
    return NotImplementedError(
        f"pb.{fname} of traced values cannot be nested inside a traced function "
        "(pb.compile, or the function of another derivative); the derivatives that nest "
        "are pb.gradient and pb.withgradient, computed by the enclosing compiled function: "
        "use pb.gradient or pb.withgradient there")


@dataclasses.dataclass
class Recorded:
    """`f(*args)` recorded as `@gradient_region` for one traced `gradient` call.

    `program` describes the region like a top-level trace (its output structure and
    result types), for the rule picking the differentiated output.
    """

    trace: Trace
    program: Program
    fn: func.FuncOp
    inputs: list[SSAValue]
    """The outer values bound to the region's arguments, in argument order."""
    leaf_of_arg: dict[int, int]
    """Region argument index -> argument leaf index, for the differentiable leaves."""

    def value(self, results: list[SSAValue]) -> Any:
        """The function's output rebuilt from the inlined region's results."""
        leaves = [Tracer(self.trace, results[v]) if isinstance(v, ResultIndex) else v
                  for v in self.program.out_leaves]
        return self.program.out_tree.unflatten(leaves)

    def gradient(self, primary: int | None) -> tuple[Any, tuple[Any, ...]]:
        """(the output, one derivative per argument), emitted into the trace.

        `primary` is the result index of the differentiated output; None (a constant
        output) gives no derivatives.
        """
        grads: list[Any] = [None] * len(self.program.in_kinds)
        if primary is None or not self.leaf_of_arg:
            results = self.trace.inline(self.fn, self.inputs)
            return self.value(results), tuple(self.program.in_tree.unflatten(grads))
        check_not_differentiated(self.program.module)
        vjp = build_vjp(self.program.module, self.fn, wrt=tuple(self.leaf_of_arg),
                        cotangents=(primary,), seed=True)
        ctx = make_context()
        for name in ("simplify", "cse", "dce"):
            get_pass(name)().apply(ctx, self.program.module)
        for op in vjp.walk():
            if FORWARDDIFF_MARK in op.attributes:
                op.attributes[DIFFERENTIATED_MARK] = UnitAttr()
        outs = self.trace.inline(vjp, self.inputs)
        num_results = len(self.fn.function_type.outputs.data)
        wrt = vjp.attributes["pullback.wrt"]
        assert isinstance(wrt, DenseArrayBase)
        for arg, g in zip(wrt.get_values(), outs[num_results:], strict=True):
            grads[self.leaf_of_arg[int(arg)]] = Tracer(self.trace, g)
        return (self.value(outs[:num_results]),
                tuple(self.program.in_tree.unflatten(grads)))


def record(trace: Trace, f: Callable[..., Any], args: tuple[Any, ...], fname: str) -> Recorded:
    """Record `f(*args)` into a region of `trace`, ready to be differentiated."""
    if any(isinstance(a, Params) for a in args):
        raise NotImplementedError(
            f"pb.{fname}(f, ps) with pb.Params (implicit mode) is not supported inside a "
            f"traced function; pass the parameters as explicit arguments: "
            f"pb.{fname}(lambda p: ..., p)")
    leaves, in_tree = flatten(tuple(args))
    kinds = [_kind(trace, leaf, fname) for leaf in leaves]
    outer = [_outer_value(trace, leaf) if k == DIFF else None for leaf, k in zip(leaves, kinds)]
    leaf_of_arg: dict[int, int] = {}
    with trace.region() as block:
        inner: list[Any] = []
        for i, (leaf, value) in enumerate(zip(leaves, outer, strict=True)):
            if value is None:
                inner.append(leaf)
                continue
            leaf_of_arg[len(block.args)] = i
            carrier = trace.region_input(block, value.shape, value.dtype)
            inner.append(integer_shadow.shadowed_input(trace, carrier)
                         if _is_integer_array(leaf) else carrier)
        out = f(*in_tree.unflatten(inner))
    out_values, out_tree = flatten(out)
    results, out_leaves = _results(trace, out_values, fname)
    block.add_op(func.ReturnOp(*results))
    region = Region(block)
    captured = capture(region.block)
    fn = func.FuncOp(REGION_NAME, ([a.type for a in block.args], [r.type for r in results]),
                     region)
    program = Program(ModuleOp([fn]), REGION_NAME, in_tree, kinds, out_tree, out_leaves, [], ())
    inputs = [v.value for v in outer if v is not None] + captured
    return Recorded(trace, program, fn, inputs, leaf_of_arg)


def _kind(trace: Trace, leaf: Any, fname: str) -> str:
    """What an argument leaf is to the region: differentiable, a mask, or static."""
    if isinstance(leaf, Tracer):
        if leaf.trace is not trace:
            raise ValueError(f"{fname}: an argument is a traced value of another trace "
                             "(a value kept from an earlier trace)")
        return MASK if leaf.dtype.kind == "b" else DIFF
    return classify(leaf)


def _results(trace: Trace, out_values: list[Any],
             fname: str) -> tuple[list[SSAValue], list[Any]]:
    """The region's results (the traced output leaves), and per output leaf its result
    index or the constant it is, as in `Program.out_leaves`."""
    results: list[SSAValue] = []
    out_leaves: list[Any] = []
    for v in out_values:
        if isinstance(v, Tracer):
            if v.trace is not trace:
                raise ValueError(f"{fname}: the function returned a traced value from "
                                 "another trace")
            out_leaves.append(ResultIndex(len(results)))
            results.append(integer_shadow.result(trace, v.value))
        else:
            out_leaves.append(v)
    return results, out_leaves


def _is_integer_array(leaf: Any) -> bool:
    """An integer array argument: it keeps its dtype in the region, carried by a float64
    region input (Python integers are promoted instead)."""
    return isinstance(leaf, Tracer | np.ndarray) and leaf.dtype.kind in "iu"


def _outer_value(trace: Trace, leaf: Any) -> Tracer:
    """A differentiable leaf as a floating-point value of the enclosing trace."""
    t = core.lift(trace, leaf)
    return t if t.dtype.kind == "f" else core.astype(t, dtypes.float_of(t.dtype))


__all__ = ["DIFFERENTIATED_MARK", "Recorded", "check_not_differentiated", "not_in_trace",
           "record"]
