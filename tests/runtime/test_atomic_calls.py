"""All-or-nothing calls: a call that raises leaves every input, parameter and optimiser
state byte as it was, and native code stops at the host call that failed.

The model is a tanh MLP; a `pb.hook` on the output of layer `k` raises when armed. The
parameters after the failed call are compared bit for bit with copies taken before it;
the numbers of a later successful step come from a numpy backward pass and numpy
optimiser steps."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from opencl_platform import NO_OPENCL
from xdsl.dialects import cf, func
from xdsl.dialects.builtin import i32
from xdsl.parser import Parser

import pullback as pb
from pullback import pipeline
from pullback.compiler.context import make_context
from pullback.compiler.passes import parse_pipeline
from pullback.dsl.pytree import flatten
from pullback.program import trace_program

O = pb.optimisers
LAYERS = 4
LR, RHO = 0.05, 0.9


class HookFailed(Exception):
    """What the user's hook raises."""


class Switch:
    """Arms the failing hook; `error` is the very exception it raises."""

    def __init__(self) -> None:
        self.armed = False
        self.error = HookFailed("the user's hook failed")

    def hook(self, g: np.ndarray) -> np.ndarray:
        if self.armed:
            raise self.error
        return g


def _model(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"layers": [{"w": rng.standard_normal((5, 5)) / 2, "b": rng.standard_normal(5)}
                       for _ in range(LAYERS)]}


def _data(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((7, 5)), rng.standard_normal((7, 5))


def _loss(model, x, y, k, switch, update=None, states=None, show=False):
    """The MLP loss with the hook on layer `k`'s output; each layer first marked for
    `pb.eager_update(states[i], layer, update)` when `update` is given."""
    h = x
    for i, layer in enumerate(model["layers"]):
        if update is not None:
            layer = pb.eager_update(states[i], layer, update)
        h = pb.tanh(h @ layer["w"] + layer["b"])
        if show and i == 0:
            h = pb.showgrad(h, "first layer")  # runs after the hook in the backward pass
        if i == k:
            h = pb.hook(switch.hook, h)
    return pb.mean((h - y) ** 2)


def _numpy_grads(model: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """The loss gradient by a hand-written backward pass."""
    hs = [x]
    for layer in model["layers"]:
        hs.append(np.tanh(hs[-1] @ layer["w"] + layer["b"]))
    dh = 2.0 * (hs[-1] - y) / y.size
    grads = []
    for i in reversed(range(LAYERS)):
        dz = dh * (1.0 - hs[i + 1] ** 2)
        grads.append({"w": hs[i].T @ dz, "b": dz.sum(axis=0)})
        dh = dz @ model["layers"][i]["w"].T
    return {"layers": grads[::-1]}


def _numpy_adam(state: list[dict], model: dict, grads: dict, rule: O.Adam) -> None:
    """`rule`'s step in numpy, in place; `state[i][key]` is `[m, v, t]`."""
    b1, b2 = rule.betas
    for layer, grad, st in zip(model["layers"], grads["layers"], state, strict=True):
        for key in layer:
            m, v, t = st[key]
            t += 1.0
            m[...] = b1 * m + (1 - b1) * grad[key]
            v[...] = b2 * v + (1 - b2) * grad[key] ** 2
            step = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + rule.eps)
            layer[key] -= rule.lr * step


def _adam_reference(model: dict) -> tuple[dict, list[dict]]:
    ref = copy.deepcopy(model)
    return ref, [{key: [np.zeros_like(a), np.zeros_like(a), np.zeros(())]
                  for key, a in layer.items()} for layer in model["layers"]]


def momentum_sgd(state: dict, layer: dict, grads: dict) -> None:
    """A Python `eager_update` function: heavy-ball momentum on one layer, in place."""
    for key, g in grads.items():
        state[key] *= RHO
        state[key] += g
        layer[key] -= LR * state[key]


def _numpy_momentum(states: list[dict], model: dict, grads: dict) -> None:
    for state, layer, grad in zip(states, model["layers"], grads["layers"], strict=True):
        momentum_sgd(state, layer, grad)


def _arrays(*trees) -> list[np.ndarray]:
    return [a for a in flatten(trees)[0] if isinstance(a, np.ndarray)]


def _fails_and_changes_nothing(call, switch: Switch, *trees) -> None:
    """`call()` with the hook armed raises the user's exception and leaves every array
    of `trees` exactly as it was."""
    arrays = _arrays(*trees)
    before = [a.copy() for a in arrays]
    switch.armed = True
    with pytest.raises(HookFailed) as caught:
        call()
    switch.armed = False
    assert caught.value is switch.error
    changed = [i for i, (a, b) in enumerate(zip(arrays, before)) if not np.array_equal(a, b)]
    assert changed == [], f"{len(changed)} of {len(arrays)} arrays changed by a failed call"


def _assert_models(got: dict, want: dict, device: str) -> None:
    tol = {"rtol": 1e-12, "atol": 1e-14} if device == "cpu" else {"rtol": 1e-9, "atol": 1e-12}
    for g, w in zip(got["layers"], want["layers"], strict=True):
        for key in g:
            np.testing.assert_allclose(g[key], w[key], **tol)


@pytest.mark.parametrize("k", [0, 2])
def test_compiled_step_with_optimisers_update(device, k):
    rule = O.Adam(0.01)
    model, (x, y) = _model(), _data()
    ref, ref_state = _adam_reference(model)
    state, switch = O.setup(rule, model), Switch()

    def step(model, x, y):
        value, (grads, _, _) = pb.withgradient(
            lambda m, x, y: _loss(m, x, y, k, switch), model, x, y)
        O.update(state, model, grads)
        return value

    c = pb.compile(step, model, x, y, device=device)
    c(model, x, y)
    _numpy_adam(ref_state, ref, _numpy_grads(ref, x, y), rule)
    _fails_and_changes_nothing(lambda: c(model, x, y), switch, model, state, x, y)
    c(model, x, y)
    _numpy_adam(ref_state, ref, _numpy_grads(ref, x, y), rule)
    _assert_models(model, ref, device)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "uncompiled"])
@pytest.mark.parametrize("k", [0, 2])
def test_eager_update_with_optimisers_update(device, k, compiled):
    rule = O.Adam(0.01)
    model, (x, y) = _model(), _data()
    ref, ref_state = _adam_reference(model)
    state, switch = O.setup(rule, model), Switch()

    def loss(model, x, y):
        return _loss(model, x, y, k, switch, O.update, state["layers"])

    if compiled:
        c = pb.compile(loss, model, x, y, mode="gradient", device=device)
        run = lambda: c(model, x, y)  # noqa: E731
    else:
        run = lambda: pb.gradient(loss, model, x, y, device=device)  # noqa: E731
    run()
    _numpy_adam(ref_state, ref, _numpy_grads(ref, x, y), rule)
    _fails_and_changes_nothing(run, switch, model, state, x, y)
    grads = run()
    _numpy_adam(ref_state, ref, _numpy_grads(ref, x, y), rule)
    _assert_models(model, ref, device)
    assert all(g is None for g in flatten(grads[0])[0])


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "uncompiled"])
@pytest.mark.parametrize("k", [0, 2])
def test_eager_update_with_a_python_function(device, k, compiled):
    """Layers after `k` are updated by Python before the hook fails: put back."""
    model, (x, y) = _model(), _data()
    ref = copy.deepcopy(model)
    states = [{key: np.zeros_like(a) for key, a in layer.items()} for layer in model["layers"]]
    ref_states = copy.deepcopy(states)
    switch = Switch()

    def loss(model, x, y):
        return _loss(model, x, y, k, switch, momentum_sgd, states)

    if compiled:
        c = pb.compile(loss, model, x, y, mode="gradient", device=device)
        run = lambda: c(model, x, y)  # noqa: E731
    else:
        run = lambda: pb.gradient(loss, model, x, y, device=device)  # noqa: E731
    run()
    _numpy_momentum(ref_states, ref, _numpy_grads(ref, x, y))
    _fails_and_changes_nothing(run, switch, model, states, x, y)
    run()
    _numpy_momentum(ref_states, ref, _numpy_grads(ref, x, y))
    _assert_models(model, ref, device)


def test_a_failing_python_update_function_changes_nothing(device):
    """The update of layer 1 changes its arrays, then raises; the layers updated before
    it (2 and 3) are put back too."""
    model, (x, y) = _model(), _data()
    ref = copy.deepcopy(model)
    states = [{key: np.zeros_like(a) for key, a in layer.items()} for layer in model["layers"]]
    ref_states = copy.deepcopy(states)
    switch = Switch()

    def failing(state, layer, grads):
        momentum_sgd(state, layer, grads)
        switch.hook(grads["w"])

    updates = [momentum_sgd, failing, momentum_sgd, momentum_sgd]

    def loss(model, x, y):
        h = x
        for i, layer in enumerate(model["layers"]):
            layer = pb.eager_update(states[i], layer, updates[i])
            h = pb.tanh(h @ layer["w"] + layer["b"])
        return pb.mean((h - y) ** 2)

    _fails_and_changes_nothing(lambda: pb.gradient(loss, model, x, y, device=device),
                               switch, model, states, x, y)
    pb.gradient(loss, model, x, y, device=device)
    _numpy_momentum(ref_states, ref, _numpy_grads(ref, x, y))
    _assert_models(model, ref, device)


def test_in_place_writes_of_a_differentiated_function(device):
    """`pb.withgradient` of a function that writes an input, with a failing hook."""
    switch = Switch()
    p, x = np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.25, 2.0])

    def f(p, x):
        value = pb.sum(pb.hook(switch.hook, p * x) ** 2)
        p -= 0.5 * x
        return value

    before = p.copy()
    _fails_and_changes_nothing(lambda: pb.withgradient(f, p, x, device=device), switch, p, x)
    value, (gp, gx) = pb.withgradient(f, p, x, device=device)
    np.testing.assert_allclose(value, np.sum((before * x) ** 2))
    np.testing.assert_allclose(gp, 2 * before * x * x)
    np.testing.assert_allclose(gx, 2 * before * x * before)
    np.testing.assert_allclose(p, before - 0.5 * x)


@pytest.mark.parametrize("k", [1, 2])
def test_native_code_stops_at_the_failed_host_call(device, k, capsys):
    """Without the runtime's undo journal (the executable called directly), nothing the
    schedule does after the failed hook happens: the layers at or before `k`, whose
    gradients follow the hook in the backward pass, keep their parameters and Adam
    moments, and the showgrad of layer 0 is not called. (Adam's step counts do not
    depend on a gradient and are written first, so they are left out.)"""
    model, (x, y) = _model(), _data()
    state, switch = O.setup(O.Adam(0.01), model), Switch()

    def step(model, x, y):
        value, (grads, _, _) = pb.withgradient(
            lambda m, x, y: _loss(m, x, y, k, switch, show=True), model, x, y)
        O.update(state, model, grads)
        return value

    args = (model, x, y)
    program = trace_program(step, args)
    built = pipeline.compiled(program, "value", device)
    inputs = program.arguments(flatten(args)[0])
    early = [a for a in _arrays(model["layers"][:k + 1], state["layers"][:k + 1]) if a.ndim]
    late = [a for a in _arrays(model["layers"][k + 1:], state["layers"][k + 1:]) if a.ndim]
    if device == "cpu":
        # the runtime keeps copies of what is written before the last host call (the
        # showgrad): not layer 0, updated after it
        undo = [inputs[i] for i in built.executable.undo_inputs]
        first = [a for a in _arrays(model["layers"][0], state["layers"][0]) if a.ndim]
        assert all(any(a is u for u in undo) for a in late)
        assert not any(any(a is u for u in undo) for a in first)
    before = [a.copy() for a in early]
    switch.armed = True
    with pytest.raises(HookFailed):
        built.executable.run(inputs)
    assert "first layer" not in capsys.readouterr().out
    assert all(np.array_equal(a, b) for a, b in zip(early, before))
    switch.armed = False
    built.executable.run(inputs)
    assert "first layer" in capsys.readouterr().out
    assert not any(np.array_equal(a, b) for a, b in zip(early, before))


class Interrupted(Exception):
    """Stands for anything that stops an OpenCL launch plan midway (an interrupt, a
    driver error)."""


@NO_OPENCL
@pytest.mark.parametrize("fraction", [0.5, 0.8, 1.0])
def test_opencl_call_stopped_between_launches_changes_nothing(monkeypatch, fraction):
    """The OpenCL plan is driven from Python, so it can stop between any two launches
    even without host calls, after kernels wrote parameters in place: here after the
    given fraction of the launches (1.0: before the last one)."""
    import pyopencl

    rule = O.Adam(0.01)
    model, (x, y) = _model(), _data()
    ref, ref_state = _adam_reference(model)
    state = O.setup(rule, model)

    def step(model, x, y):
        value, (grads, _, _) = pb.withgradient(
            lambda m, x, y: _loss(m, x, y, -1, Switch()), model, x, y)
        O.update(state, model, grads)
        return value

    c = pb.compile(step, model, x, y, device="opencl")
    enqueue = pyopencl.enqueue_nd_range_kernel
    launches = [0]

    def counting(*args, **kwargs):
        launches[0] += 1
        if launches[0] > stop:
            raise Interrupted
        return enqueue(*args, **kwargs)

    stop = np.inf
    with monkeypatch.context() as patch:
        patch.setattr(pyopencl, "enqueue_nd_range_kernel", counting)
        c(model, x, y)
    _numpy_adam(ref_state, ref, _numpy_grads(ref, x, y), rule)
    stop, launches[0] = min(int(fraction * launches[0]), launches[0] - 1), 0
    arrays = _arrays(model, state)
    before = [a.copy() for a in arrays]
    with monkeypatch.context() as patch:
        patch.setattr(pyopencl, "enqueue_nd_range_kernel", counting)
        with pytest.raises(Interrupted):
            c(model, x, y)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, before))
    c(model, x, y)
    _numpy_adam(ref_state, ref, _numpy_grads(ref, x, y), rule)
    _assert_models(model, ref, "opencl")


def test_host_call_status_returns_at_each_failed_host_call():
    """`host-call-status` (run by the CPU target) on the kernel-level IR: the host
    function returns an i32 and branches on each host call's status; the result
    verifies and prints."""
    x = np.array([1.0, 2.0])
    switch = Switch()
    c = pb.compile(lambda x: pb.sum(pb.showgrad(pb.hook(switch.hook, x * x), "s") ** 2), x,
                   mode="gradient")
    ctx = make_context()
    module = Parser(ctx, c.ir("convert-kernels-to-loops")).parse_module()
    parse_pipeline("host-call-status").apply(ctx, module)
    module.verify()
    host = next(op for op in module.ops if isinstance(op, func.FuncOp)
                and "pullback.num_inputs" in op.attributes)
    calls = [op for op in host.walk() if isinstance(op, func.CallOp)
             and op.callee.string_value().startswith("pullback_host_call_")]
    branches = [op for op in host.walk() if isinstance(op, cf.ConditionalBranchOp)]
    assert len(calls) == len(branches) == 2
    assert host.function_type.outputs.data == (i32,)
    assert all(b.then_arguments[0] is call.res[0] for b, call in zip(branches, calls))
    again = Parser(ctx, str(module)).parse_module()
    parse_pipeline("host-call-status").apply(ctx, again)  # already done: unchanged
    assert str(again) == str(module)
