"""How each system's training step is set up and timed (`Workload.transform == "train"`).

One call is one optimiser step: the loss gradient of the workload's objective, then
Adam applied to every parameter array in place. Every system starts from its own copy
of the parameters with zero optimiser state. A timed call is simply the next step; the
`output` compared by `check` comes from another fresh copy after `CHECK_STEPS` steps.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

import pullback as pb
from benchmarks.engines import EngineResult
from benchmarks.timing import Timing, measure, time_once
from benchmarks.workload import Problem, Workload

CHECK_STEPS = 5
"""Steps taken from the start before the parameters are compared across systems."""

VARIANTS = ("", "eager")
"""pullback's forms of the step: "" the compiled `withgradient` + `update` step,
"eager" the workload's `eager_objective` compiled with mode="gradient"."""


def adam(workload: Workload) -> pb.optimisers.Adam:
    """The workload's optimiser; the numpy and JAX steps are written for Adam only."""
    rule = workload.optimiser
    if type(rule) is not pb.optimisers.Adam:
        raise ValueError(f"training workload {workload.name} needs optimiser "
                         f"pb.optimisers.Adam(...), got {rule!r}")
    return rule


def _fresh(problem: Problem) -> tuple[Any, ...]:
    return copy.deepcopy(problem.params)


def _leaves(tree: Any) -> list[Any]:
    """The arrays of a parameter pytree in a fixed order (dicts by sorted key)."""
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in _leaves(tree[key])]
    if isinstance(tree, tuple | list):
        return [leaf for item in tree for leaf in _leaves(item)]
    return [tree]


# -- one protocol for every system ------------------------------------------------------------

Trainer = tuple[Callable[[], Any], Callable[[], Any]]
"""A started training run: `step()` takes one step, `params()` the current parameters."""


def _first_step(start: Callable[[], Trainer]) -> Trainer:
    trainer = start()
    trainer[0]()
    return trainer


def _timed(start: Callable[[], Trainer], repeat: int) -> tuple[float, Timing]:
    """Seconds to start a run and take its first step, then the next steps' timing."""
    first, (step, _) = time_once(lambda: _first_step(start))
    return first, measure(step, repeat)


def _checked(start: Callable[[], Trainer]) -> Any:
    """The parameters of a fresh run after `CHECK_STEPS` steps."""
    step, params = start()
    for _ in range(CHECK_STEPS):
        step()
    return params()


# -- numpy ----------------------------------------------------------------------------------


class NumpyAdam:
    """Adam in numpy on a parameter pytree, in place, as `pb.optimisers.Adam` defines it.

    `t ← t + 1`, `m ← b1·m + (1−b1)·g`, `v ← b2·v + (1−b2)·g²`,
    `p ← p − lr·m̂/(√v̂ + eps)` with `m̂ = m/(1−b1^t)`, `v̂ = v/(1−b2^t)`; `t` is kept in
    the parameters' dtype, so a float32 model is trained in float32 throughout.
    """

    def __init__(self, rule: pb.optimisers.Adam, params: Any):
        self.lr, (self.b1, self.b2), self.eps = rule.lr, rule.betas, rule.eps
        self.params = _leaves(params)
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = np.zeros((), self.params[0].dtype)

    def step(self, grads: Any) -> None:
        """One step with `grads`, a pytree shaped like the parameters."""
        self.t += 1
        m_scale = 1.0 - self.b1 ** self.t
        v_scale = 1.0 - self.b2 ** self.t
        for p, m, v, g in zip(self.params, self.m, self.v, _leaves(grads), strict=True):
            m *= self.b1
            m += (1.0 - self.b1) * g
            v *= self.b2
            v += (1.0 - self.b2) * (g * g)
            denominator = np.sqrt(v / v_scale)
            denominator += self.eps
            p -= self.lr * ((m / m_scale) / denominator)


def run_numpy(workload: Workload, problem: Problem, repeat: int) -> EngineResult:
    """The hand-written numpy gradient, then `NumpyAdam`; no first-call cost."""

    def start() -> Trainer:
        params = _fresh(problem)
        optimiser = NumpyAdam(adam(workload), params)
        return (lambda: optimiser.step(workload.numpy_gradient(*params, *problem.data)),
                lambda: params)

    _, steady = _timed(start, repeat)
    return EngineResult(steady=steady, output=_checked(start))


# -- pullback -------------------------------------------------------------------------------


def pullback_start(workload: Workload, problem: Problem, device: str,
                   variant: str = "") -> tuple[Callable[[], Trainer], list[Any]]:
    """How pullback starts a training run, and the list each started run's compiled
    step is appended to.

    variant "": `pb.withgradient` and `pb.optimisers.update` in one traced step (mode
    "value", the data passed as arguments); "eager": `eager_objective`, whose
    `pb.eager_update` calls run each layer's update inside the backward pass (mode
    "gradient", the data closed over so only the parameters are differentiated).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown training variant {variant!r}; accepted: {VARIANTS}")
    if variant == "eager" and workload.eager_objective is None:
        raise ValueError(f"workload {workload.name} has no eager_objective")
    options = {} if device == "cpu" else {"device": device}
    data, count = problem.data, len(problem.params)
    compiled: list[Any] = []

    def start() -> Trainer:
        params = _fresh(problem)
        state = pb.optimisers.setup(adam(workload), params)
        if variant == "eager":
            def loss(*arrays):
                return workload.eager_objective(state, *arrays, *data)

            step = pb.compile(loss, *params, mode="gradient", **options)
            compiled.append(step)
            return lambda: step(*params), lambda: params

        def train_step(*args):
            arrays, inputs = args[:count], args[count:]
            value, grads = pb.withgradient(lambda *p: workload.objective(*p, *inputs), *arrays)
            pb.optimisers.update(state, arrays, grads)
            return value

        step = pb.compile(train_step, *params, *data, **options)
        compiled.append(step)
        return lambda: step(*params, *data), lambda: params

    return start, compiled


def first_step(start: Callable[[], Trainer]) -> Trainer:
    """Start a training run and take its first step (a first call)."""
    return _first_step(start)


def run_pullback(workload: Workload, problem: Problem, repeat: int, device: str,
                 variant: str = "") -> EngineResult:
    """First call = trace + compile + the first step from an empty cache; steady = steps
    (`pullback_start` for the variants)."""
    start, compiled = pullback_start(workload, problem, device, variant)
    pb.clear_caches()
    first, steady = _timed(start, repeat)
    phases = {key: float(value) for key, value in compiled[0].timings.items()}
    return EngineResult(steady=steady, first_call=first, output=_checked(start), phases=phases)


# -- JAX ------------------------------------------------------------------------------------


def _jax_step(workload: Workload, count: int) -> Callable[..., Any]:
    """`jax.jit` of one step `(params, state, *data) -> (params, state, loss)`: the loss
    and its gradient by `jax.value_and_grad`, then the same Adam in `jax.numpy`;
    parameters and state are donated, so XLA may write the new values into them."""
    import jax
    import jax.numpy as jnp

    rule = adam(workload)
    b1, b2 = rule.betas
    value_and_grad = jax.value_and_grad(workload.jax_objective, argnums=tuple(range(count)))
    tree_map = jax.tree_util.tree_map

    def step(params, state, *data):
        loss, grads = value_and_grad(*params, *data)
        m, v, t = state
        t = t + 1.0
        m = tree_map(lambda m, g: b1 * m + (1.0 - b1) * g, m, grads)
        v = tree_map(lambda v, g: b2 * v + (1.0 - b2) * (g * g), v, grads)
        m_scale, v_scale = 1.0 - b1 ** t, 1.0 - b2 ** t

        def descend(p, m, v):
            return p - rule.lr * ((m / m_scale) / (jnp.sqrt(v / v_scale) + rule.eps))

        return tree_map(descend, params, m, v), (m, v, t), loss

    return jax.jit(step, donate_argnums=(0, 1))


def run_jax(workload: Workload, problem: Problem, repeat: int) -> EngineResult:
    """`jax.jit` of `_jax_step`, compiled afresh for each run; the data arrays are
    placed on the device once, the parameters and state stay there between steps."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    data = tuple(jax.device_put(a) for a in problem.data)
    dtype = _leaves(problem.params)[0].dtype

    def start() -> Trainer:
        params = jax.device_put(_fresh(problem))
        m, v = (jax.tree_util.tree_map(jnp.zeros_like, params) for _ in range(2))
        carry = [params, (m, v, jnp.zeros((), dtype))]
        jitted = _jax_step(workload, len(problem.params))

        def step() -> Any:
            carry[0], carry[1], loss = jitted(*carry, *data)
            return jax.block_until_ready(loss)

        return step, lambda: jax.tree_util.tree_map(lambda a: np.array(a, copy=True), carry[0])

    first, steady = _timed(start, repeat)
    return EngineResult(steady=steady, first_call=first, output=_checked(start))
