"""`eager_update`: apply an optimiser step in the backward pass, as soon as a gradient is complete.

`eager_update(state, model, update)` returns `model` unchanged. Inside a
differentiated trace each array of `model` gets an `ad.callback` of kind
`eager_update`: the backward pass hands the array's complete gradient to the host
instead of passing it on, so the parameter gets no gradient result (its derivative
is None) and its gradient buffer is freed where the update runs. Once every array of
`model` has reported, `update(state, model, grads)` runs once on the caller's
arrays, in place (for `pb.optimisers.update`, the optimiser state changes too); the
writeable arrays of `model` and `state` are first handed to the `save` function the
runtime gives each call (its undo journal), so a call that fails later leaves them as
they were.

The model's arrays must be inputs of the trace: function arguments or implicit
parameters (`pb.Params`). Which caller arrays those are is known only per call: the
compiled code finds its update functions through a token array it takes as an input,
and the runtime passes each run a token of its own (`EagerUpdates.for_call`), naming
that run's arrays. Calls in flight at once (several threads, or a pullback's backward
function called later) so update each their own arrays.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.ir import Block, BlockArgument, Region

from pullback.compiler.dialects.ad import CallbackOp, EagerUpdateOp, YieldOp
from pullback.compiler.dialects.callback_table import CallbackTable, register
from pullback.dsl import core
from pullback.dsl.pytree import flatten
from pullback.dsl.trace import Trace, current_trace
from pullback.dsl.tracer import Tracer

Update = Callable[[Any, Any, Any], Any]

Save = Callable[[list[np.ndarray]], None]
"""Records arrays about to be changed in place, to be put back if the call fails."""


@dataclass(eq=False)
class EagerParam:
    """One eagerly updated model array: its function-argument index, its place in
    the model (`path`), its group and number in it (`index`), its shape."""

    arg: int
    path: str
    group: _Group
    index: int
    shape: tuple[int, ...]


@dataclass(eq=False)
class _Group:
    """The arrays of one `eager_update` call."""

    state: Any
    model: Any
    update: Update
    params: list[EagerParam] = field(default_factory=list)

    def apply(self, arrays: dict[str, np.ndarray], grads: dict[int, np.ndarray | None],
              save: Save) -> None:
        """Run the update on one call's `arrays` (by path) with their complete gradients
        (`grads[k]` for `params[k]`; None: unreached), handing what it may change to
        `save` first."""
        if all(g is None for g in grads.values()):
            return
        by_path = {p.path: grads[k] for k, p in enumerate(self.params)}
        model = _map(self.model, "model", lambda path, x: arrays.get(path, _concrete(x)))
        save(_writeable_arrays((model, self.state)))  # put back if the call fails
        self.update(self.state, model,
                    _map(self.model, "model", lambda path, _: by_path.get(path)))


def _writeable_arrays(tree: Any) -> list[np.ndarray]:
    """The writeable numpy arrays among the leaves of `tree`: what an update may change."""
    return [a for a in flatten(tree)[0] if isinstance(a, np.ndarray) and a.flags.writeable]


_TRACED = object()
"""Stands in the kept model structure for a traced leaf that is not updated."""


def _concrete(leaf: Any) -> Any:
    return None if leaf is _TRACED else leaf


class _Call:
    """One run of compiled code: the caller's arrays and the gradients received so far."""

    def __init__(self, params: list[EagerParam], arrays: list[np.ndarray], save: Save):
        self._params = params
        self._save = save
        self._arrays: dict[_Group, dict[str, np.ndarray]] = {}
        for p, arr in zip(params, arrays, strict=True):
            self._arrays.setdefault(p.group, {})[p.path] = arr
        self._grads: dict[_Group, dict[int, np.ndarray | None]] = {}

    def receive(self, slot: int, grad: np.ndarray | None) -> None:
        """The gradient of the parameter at `slot`; runs its group's update once the
        gradients of every array of the group are in."""
        param = self._params[slot]
        group = param.group
        got = self._grads.setdefault(group, {})
        got[param.index] = grad
        if len(got) < len(group.params):
            return
        del self._grads[group]
        group.apply(self._arrays[group], got, self._save)


@dataclass(eq=False)
class EagerUpdates:
    """The arrays a trace updates with Python functions (the callback at slot k reports
    the gradient of `params[k]`), and the placeholder token array its code reads."""

    params: list[EagerParam] = field(default_factory=list)
    token: np.ndarray = field(default_factory=lambda: np.zeros((), np.int64))
    """Names no table: every run gets a token of its own instead (`for_call`)."""

    def for_call(self, hidden: list[Any], arrays: list[Any], save: Save) -> list[Any]:
        """`hidden` (the trace's closed-over arrays, passed to one run) with the
        placeholder token replaced by one for that run alone, whose updates write
        `arrays[k]` for `params[k]`, handing the arrays an update may change to `save`
        first (the run's undo journal)."""
        for p, arr in zip(self.params, arrays, strict=True):
            if not (isinstance(arr, np.ndarray) and arr.dtype.kind == "f"
                    and arr.flags.writeable):
                raise TypeError(
                    f"eager_update updates the model in place, so the value at {p.path} "
                    f"must be a writeable floating-point numpy array, got {type(arr).__name__}")
        call = _Call(self.params, arrays, save)
        table = CallbackTable()
        for slot, p in enumerate(self.params):
            table.add(functools.partial(call.receive, slot), p.shape)
        token = register(table)
        return [token if h is self.token else h for h in hidden]


_UPDATES: weakref.WeakKeyDictionary[Trace, EagerUpdates] = weakref.WeakKeyDictionary()
_UPDATED: weakref.WeakKeyDictionary[Trace, set[int]] = weakref.WeakKeyDictionary()
"""The function arguments some eager_update of the trace updates (host or compiled)."""


def eager_update(state: Any, model: Any, update: Update) -> Any:
    """`model`, updated in place by `update(state, model, grads)` in the backward pass.

    Args:
      state: the optimiser state, e.g. `pb.optimisers.setup(rule, model)`.
      model: an array or a pytree (dicts, lists, tuples) of arrays: arguments of the
        differentiated function or implicit parameters.
      update: called once per backward pass, when the gradients of every array of
        `model` are complete, with the caller's arrays and those gradients (None for
        an array no gradient reaches); it must update the arrays in place, as
        `pb.optimisers.update` does.

    Returns:
      `model` (the identity in the forward pass). The derivatives returned for its
      arrays are None. Outside a differentiated trace this just returns `model`.

    Example:
      >>> w = np.array([1.0, 2.0]); state = pb.optimisers.setup(pb.optimisers.Descent(0.5), w)
      >>> pb.gradient(lambda w: pb.sum(pb.eager_update(state, w, pb.optimisers.update) ** 2), w)
      (None,)
      >>> w
      array([0., 0.])
    """
    if not callable(update):
        raise TypeError(f"eager_update needs a callable update, got {type(update).__name__}")
    trace = current_trace()
    if trace is None:
        return model
    compiled = getattr(update, "compiled_eager_update", None)
    if compiled is not None:
        return compiled(state, model, lambda path, leaf, rule, rule_state: _mark_compiled(
            trace, path, leaf, rule, rule_state))
    # the group keeps the model's structure but no tracers (they would keep the trace alive)
    kept = _map(model, "model", lambda _, x: _TRACED if isinstance(x, Tracer) else x)
    group = _Group(state, kept, update)
    return _map(model, "model", lambda path, leaf: _mark(trace, group, path, leaf))


def _param_input(trace: Trace, path: str, leaf: Any) -> Tracer | None:
    """The function input the model array `leaf` at `path` is (None: not a traced array),
    checked to be a floating-point input not updated by another eager_update."""
    if isinstance(leaf, np.ndarray) and not isinstance(leaf, Tracer):
        if not trace.is_param(leaf):
            raise ValueError(
                f"eager_update: the array at {path} is not an input of the differentiated "
                "function; pass the model as an argument (or in pb.Params)")
        leaf = trace.hidden_input(leaf)
    if not isinstance(leaf, Tracer) or leaf.trace is not trace:
        return None
    value = leaf.value
    if not (isinstance(value, BlockArgument) and value.block is trace.block):
        raise ValueError(
            f"eager_update: the value at {path} is computed in the function, not one of its "
            "inputs; eager_update takes the parameters themselves")
    if leaf.dtype.kind != "f":
        raise TypeError(f"eager_update: the array at {path} is not floating point "
                        f"({leaf.dtype}); only parameters with gradients can be updated")
    used = _UPDATED.setdefault(trace, set())
    if value.index in used:
        raise ValueError(
            f"eager_update: the array at {path} is already updated by another eager_update "
            "call; parameters shared between eager updates are not supported")
    used.add(value.index)
    return leaf


def _mark(trace: Trace, group: _Group, path: str, leaf: Any) -> Any:
    """The eagerly updated stand-in for the model array `leaf` at `path` (host update)."""
    traced = _param_input(trace, path, leaf)
    if traced is None:
        return leaf
    value = traced.value
    assert isinstance(value, BlockArgument)
    param = EagerParam(value.index, path, group, len(group.params),
                       tuple(value.type.get_shape()))
    group.params.append(param)
    updates = _UPDATES.get(trace)
    if updates is None:
        updates = _UPDATES[trace] = EagerUpdates()
    slot = len(updates.params)
    updates.params.append(param)
    return trace.emit(CallbackOp(value, trace.hidden_input(updates.token).value, slot,
                                 "eager_update", path))


def _mark_compiled(trace: Trace, path: str, leaf: Any, rule: Callable[..., Any],
                   rule_state: Any) -> Any:
    """The stand-in for the model array `leaf` at `path` whose optimiser step
    `rule(param, grad, state) -> (new_param, new_state)` is compiled into the backward
    pass (`ad.eager_update`); the arrays of `rule_state` are written in place too."""
    param = _param_input(trace, path, leaf)
    if param is None:
        return leaf
    old, tree = flatten(rule_state)
    states = [trace.hidden_input(a) if isinstance(a, np.ndarray) else None for a in old]
    traced_states = [s for s in states if s is not None]
    with trace.region() as block:
        p = trace.region_input(block, param.shape, param.dtype)
        g = trace.region_input(block, param.shape, param.dtype)
        args = iter([trace.region_input(block, s.shape, s.dtype) for s in traced_states])
        inner = [next(args) if s is not None else a for s, a in zip(states, old, strict=True)]
        new_param, new_state = rule(p, g, tree.unflatten(inner))
        new_leaves, new_tree = flatten(new_state)
        if new_tree != tree:
            raise ValueError(f"eager_update: the optimiser rule changed the structure of the "
                             f"state of the model's array at {path}")
        results = [_result(trace, path, "parameter", p, new_param)]
        results += [_result(trace, path, f"state array {k}", s, v)
                    for k, (s, v) in enumerate(zip(inner, new_leaves, strict=True))
                    if states[k] is not None]
        trace.terminate(block, YieldOp(*(r.value for r in results)))
    _check_isolated(block, path)
    op = EagerUpdateOp(param.value, [s.value for s in traced_states], Region(block), path)
    return trace.emit(op)


def _result(trace: Trace, path: str, what: str, old: Tracer, new: Any) -> Tracer:
    """The rule's new value for `old`, of its shape and dtype."""
    if tuple(np.shape(new)) != old.shape:
        raise ValueError(f"the optimiser rule returned a new {what} of shape {np.shape(new)} "
                         f"for the model's array at {path}, which has shape {old.shape}")
    return core.lift(trace, new, old.dtype)


def _check_isolated(block: Block, path: str) -> None:
    """The rule's ops may use only the region's arguments and their own results."""
    inside = set(block.args)
    for op in block.walk():
        inside.update(op.results)
        for region in op.regions:
            for b in region.blocks:
                inside.update(b.args)
    for op in block.walk():
        for v in op.operands:
            if v not in inside:
                raise ValueError(
                    f"eager_update: the optimiser rule for the model's array at {path} uses "
                    "a traced value from outside its (param, grad, state) arguments")


def _map(tree: Any, path: str, fn: Callable[[str, Any], Any]) -> Any:
    """`tree` with `fn(path, leaf)` at every leaf (dicts, lists, tuples, NamedTuples)."""
    if isinstance(tree, dict):
        return {k: _map(v, f"{path}[{k!r}]", fn) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(_map(v, f"{path}.{n}", fn) for n, v in zip(tree._fields, tree)))
    if isinstance(tree, tuple | list):
        return type(tree)(_map(v, f"{path}[{i}]", fn) for i, v in enumerate(tree))
    return fn(path, tree)


def eager_updates(trace: Trace) -> EagerUpdates | None:
    """The arrays `trace` updates with Python functions (None: none)."""
    return _UPDATES.get(trace)
