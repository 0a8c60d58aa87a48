"""How each system's gradient is set up and timed: pullback, hand-written numpy, JAX.

`benchmarks.training` offers the same functions for training workloads.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from benchmarks.timing import Timing, measure, time_once
from benchmarks.workload import Problem, Workload


@dataclass
class EngineResult:
    """Timings and the output of one system on one workload; `error` if it failed.

    `output` is what `check` compares with numpy's: the derivative, or for a training
    workload the parameters after `training.CHECK_STEPS` steps. `cold_first` and
    `warm_first` are pullback's first calls in fresh processes with an empty and a
    warm disk compile cache (`benchmarks.first_call`).
    """

    steady: Timing | None = None
    first_call: float | None = None
    cold_first: float | None = None
    warm_first: float | None = None
    output: Any = None
    phases: dict[str, float] = field(default_factory=dict)
    error: str | None = None


VARIANTS = ("",)
"""pullback's forms of a gradient workload: one, the compiled gradient."""

JAX_TRANSFORMS = {"gradient": "grad", "jacobian": "jacrev", "hessian": "hessian"}
"""The JAX function timed for each `Workload.transform`."""


def jax_available() -> bool:
    """Whether JAX can be imported (its rows are left empty otherwise)."""
    return importlib.util.find_spec("jax") is not None


def run_numpy(workload: Workload, problem: Problem, repeat: int) -> EngineResult:
    """The hand-written numpy gradient; it has no first-call cost."""
    args = (*problem.params, *problem.data)
    steady = measure(lambda: workload.numpy_gradient(*args), repeat)
    return EngineResult(steady=steady, output=workload.numpy_gradient(*args))


def run_pullback(workload: Workload, problem: Problem, repeat: int, device: str,
                 variant: str = "") -> EngineResult:
    """First call = trace + compile + one run from an empty cache; steady = compiled calls.

    The data arrays are closed over, so only the parameters are differentiated.
    A gradient has one form, `variant` "" (`VARIANTS`).
    """
    import pullback as pb

    if variant not in VARIANTS:
        raise ValueError(f"unknown gradient variant {variant!r}; accepted: {VARIANTS}")

    options = {} if device == "cpu" else {"device": device}
    data = problem.data

    def loss(*params):
        return workload.objective(*params, *data)

    pb.clear_caches()
    first, (compiled, gradient) = time_once(
        lambda: compile_and_call(pb, loss, problem.params, options, workload.transform)
    )
    steady = measure(lambda: compiled(*problem.params), repeat)
    phases = {key: float(value) for key, value in getattr(compiled, "timings", {}).items()}
    return EngineResult(steady=steady, first_call=first, output=gradient, phases=phases)


def compile_and_call(pb: Any, loss: Any, params: tuple, options: dict,
                      mode: str) -> tuple[Any, Any]:
    """`pb.compile` in the workload's mode (gradient, jacobian, hessian) and one call;
    a Hessian is wrapped in a tuple like the other engines' results."""
    compiled = pb.compile(loss, *params, mode=mode, **options)
    out = compiled(*params)
    return compiled, (out,) if mode == "hessian" else out


def run_jax(workload: Workload, problem: Problem, repeat: int) -> EngineResult:
    """`jax.jit(jax.grad(...))` over the parameters (`jax.jacrev` / `jax.hessian` for those
    transforms, of the one parameter); data arrays are passed as arguments."""
    import jax

    jax.config.update("jax_enable_x64", True)
    transform = getattr(jax, JAX_TRANSFORMS[workload.transform])
    single = workload.transform == "hessian"
    argnums = 0 if single else tuple(range(len(problem.params)))
    args = (*problem.params, *problem.data)

    def first_call() -> Any:
        derivative = jax.jit(transform(workload.jax_objective, argnums=argnums))
        grad = (lambda *a: (derivative(*a),)) if single else derivative
        return grad, jax.block_until_ready(grad(*args))

    first, (grad, gradient) = time_once(first_call)
    steady = measure(lambda: jax.block_until_ready(grad(*args)), repeat)
    return EngineResult(steady=steady, first_call=first, output=gradient)
