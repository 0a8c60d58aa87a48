"""VJP and JVP rules of every `ad` op.

* `stop_gradient`: zero derivative.
* `callback`: its VJP hands the cotangent of this use to the host (`callback_grad`);
  when a `showgrad` use receives no cotangent, its *unreached* rule still emits the
  host call, marked `unreached`, so that it can say so (a hook is simply not called).
  An `eager_update` callback takes the parameter's gradient to the host, which
  updates the parameter in place: the parameter gets no gradient, and an unreached
  use still calls the host (marked `unreached`).
* `callback_grad` of a `showgrad` is the identity, and differentiates as such; that of
  a Python hook is opaque: differentiating it again (`hessian`) raises an error that
  suggests a compiled hook. `hook`'s VJP inlines its region.
* Forward mode: showgrad and hooks are reverse-mode concepts, so `callback` and `hook`
  pass their tangent through unchanged; an `eager_update` callback refuses forward
  mode (an update is a reverse-pass effect).
* `checkpoint`: its VJP recomputes the region from its operands and inlines the
  region's VJP there, marked as recomputed; its JVP inlines the region's JVP
  (`autodiff/checkpoint.py` explains both).
* `yield` only ends a `hook` or `checkpoint` region, which its parent's rule inlines;
  as an op of its own it has no results, hence a zero row; so has `reverse_begin`.

`UNREACHED_RULES` is the rule table's hook for ops that must act even when their
result gets no cotangent: the reverse pass calls `unreached_rule(op)(e, op)` for an
active op whose cotangent stays empty, where one is registered.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.dialects.builtin import DenseArrayBase, UnitAttr
from xdsl.ir import Operation, SSAValue

from pullback.compiler.autodiff.emit import Emitter
from pullback.compiler.autodiff.rules.table import Grads, RuleTable
from pullback.compiler.dialects import ad

RULES = RuleTable()
VJP_RULES = RULES.vjp
JVP_RULES = RULES.jvp
UnreachedRule = Callable[[Emitter, Operation], None]
UNREACHED_RULES: dict[type[Operation], UnreachedRule] = {}

RULES.defzero(ad.StopGradientOp, ad.YieldOp, ad.ReverseBeginOp)


def _host_call(e: Emitter, op: ad.CallbackOp, g: SSAValue, unreached: bool) -> SSAValue:
    extra = {"unreached": UnitAttr()} if unreached else {}
    return e.emit(ad.CallbackGradOp(g, op.table, op.slot.value.data, op.kind.data,
                                    op.label.data, **extra))


def _callback_vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
    assert isinstance(op, ad.CallbackOp)
    passed = _host_call(e, op, g, unreached=False)
    return (None if op.kind.data == "eager_update" else passed, None)


def _callback_unreached(e: Emitter, op: Operation) -> None:
    assert isinstance(op, ad.CallbackOp)
    if op.kind.data in ("showgrad", "eager_update"):
        _host_call(e, op, e.full(0.0, op.operand), unreached=True)


def _check_transparent(op: Operation, mode: str) -> None:
    """A Python hook's host call has no derivative: refuse to differentiate through it."""
    assert isinstance(op, ad.CallbackGradOp)
    if op.kind.data != "showgrad":
        raise NotImplementedError(
            f"the Python hook '{op.label.data}' runs on the host and cannot be "
            f"differentiated again ({mode} mode over the backward pass, as in pb.hessian); "
            "use pb.hook(fn, x, compiled=True) with a DSL function instead")


def _host_call_vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
    _check_transparent(op, "reverse")
    return (g, None)


def _host_call_jvp(e: Emitter, op: Operation,
                   tangents: tuple[SSAValue | None, ...]) -> SSAValue | None:
    _check_transparent(op, "forward")
    return tangents[0]


def _pass_tangent(e: Emitter, op: Operation,
                  tangents: tuple[SSAValue | None, ...]) -> SSAValue | None:
    return tangents[0]


def _callback_jvp(e: Emitter, op: Operation,
                  tangents: tuple[SSAValue | None, ...]) -> SSAValue | None:
    """The tangent, unchanged; an eager update has no meaning in forward mode."""
    assert isinstance(op, ad.CallbackOp)
    if op.kind.data == "eager_update":
        raise NotImplementedError(
            f"pb.eager_update ('{op.label.data}') updates parameters in the reverse pass "
            "only; forward-mode and second derivatives (jvp, forwarddiff, hessian) over "
            "it are not supported: use pb.gradient, pb.withgradient or pb.pullback")
    return tangents[0]


def _hook_vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
    """The hook's region applied to the cotangent, inlined into the backward pass."""
    assert isinstance(op, ad.HookOp)
    block = op.body.block
    mapping: dict[SSAValue, SSAValue] = {block.args[0]: g}
    for inner in block.ops:
        if isinstance(inner, ad.YieldOp):
            return (mapping.get(inner.values[0], inner.values[0]),)
        e.block.add_op(inner.clone(mapping))
    raise ValueError("ad.hook: the region does not end in ad.yield")


def _checkpoint_vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
    """The region recomputed from its operands and differentiated, in the backward pass."""
    from pullback.compiler.autodiff.checkpoint import (
        RECOMPUTE_MARK,
        inline_function,
        region_function,
    )
    from pullback.compiler.autodiff.reverse import build_vjp

    assert isinstance(op, ad.CheckpointOp)
    module, fn = region_function(op)
    vjp = build_vjp(module, fn, wrt=[i for i, need in enumerate(needs) if need])
    outputs = inline_function(e.block, vjp, [*op.operands, g], mark=RECOMPUTE_MARK)
    has_grad = vjp.attributes["pullback.wrt"]
    assert isinstance(has_grad, DenseArrayBase)
    grads: list[SSAValue | None] = [None] * len(op.operands)
    for k, i in enumerate(has_grad.get_values()):
        grads[int(i)] = outputs[1 + k]
    return tuple(grads)


def _checkpoint_jvp(e: Emitter, op: Operation,
                    tangents: tuple[SSAValue | None, ...]) -> SSAValue | None:
    """The region's forward derivative, inlined."""
    from pullback.compiler.autodiff.checkpoint import inline_function, region_function
    from pullback.compiler.autodiff.forward import build_jvp

    assert isinstance(op, ad.CheckpointOp)
    module, fn = region_function(op)
    jvp = build_jvp(module, fn)
    takes = jvp.attributes["pullback.tangents"]
    assert isinstance(takes, DenseArrayBase)
    seeds = []
    for i in takes.get_values():
        t = tangents[int(i)]
        seeds.append(e.zeros(op.operands[int(i)]) if t is None else t)
    outputs = inline_function(e.block, jvp, [*op.operands, *seeds])
    return outputs[1] if len(outputs) > 1 else None


def _eager_update_vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
    """The optimiser step inlined on the complete gradient `g`; its results are written
    to the parameter and state arguments. No gradient flows on."""
    from pullback.compiler.dialects.array import AssignOp

    assert isinstance(op, ad.EagerUpdateOp)
    block = op.body.block
    mapping: dict[SSAValue, SSAValue] = dict(
        zip(block.args, [op.param, g, *op.states], strict=True))
    for inner in block.ops:
        if isinstance(inner, ad.YieldOp):
            for target, value in zip([op.param, *op.states], inner.values, strict=True):
                e.block.add_op(AssignOp(target, mapping.get(value, value)))
            return (None,) * len(op.operands)
        e.block.add_op(inner.clone(mapping))
    raise ValueError("ad.eager_update: the region does not end in ad.yield")


def _eager_update_jvp(e: Emitter, op: Operation,
                      tangents: tuple[SSAValue | None, ...]) -> SSAValue | None:
    assert isinstance(op, ad.EagerUpdateOp)
    raise NotImplementedError(
        f"pb.eager_update ('{op.label.data}') updates parameters in the reverse pass "
        "only; forward-mode and second derivatives (jvp, forwarddiff, hessian) over "
        "it are not supported: use pb.gradient, pb.withgradient or pb.pullback")


RULES.define(ad.CallbackOp, _callback_vjp, _callback_jvp)
RULES.define(ad.EagerUpdateOp, _eager_update_vjp, _eager_update_jvp)
RULES.define(ad.CheckpointOp, _checkpoint_vjp, _checkpoint_jvp)
RULES.define(ad.CallbackGradOp, _host_call_vjp, _host_call_jvp)
RULES.define(ad.HookOp, _hook_vjp, _pass_tangent)
UNREACHED_RULES[ad.CallbackOp] = _callback_unreached


def unreached_rule(op: Operation) -> UnreachedRule | None:
    """What `op` emits when its result receives no cotangent (None: nothing)."""
    return UNREACHED_RULES.get(type(op))
