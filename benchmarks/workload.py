"""What a benchmark workload provides: a problem instance and one objective per system."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One instance of a workload.

    `params` are the differentiated arguments (one gradient entry each); `data` are
    the remaining arrays, passed after the parameters and never differentiated.
    """

    params: tuple[Any, ...]
    data: tuple[Any, ...] = ()
    sizes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    """A benchmark workload: the same objective written for every system compared.

    Each objective takes `(*problem.params, *problem.data)` and returns a scalar;
    `numpy_gradient` takes the same arguments and returns one derivative per parameter,
    shaped like the parameter (a dict for a dict parameter).

    `transform` names what is timed: "gradient" (the default), "jacobian" (the
    objective returns an array; `numpy_gradient` gives one Jacobian per parameter),
    "hessian" (one parameter; `numpy_gradient` gives its Hessian as a 1-tuple) or
    "train" (one step of the `optimiser` rule, a `pb.optimisers` rule, on the
    objective's gradient, in place; see `benchmarks.training`).

    `eager_objective(state, *params, *data)`, for "train", is the objective with
    `pb.eager_update` marking each layer, `state` being
    `pb.optimisers.setup(optimiser, params)` for the tuple of parameters: compiled with
    mode="gradient" it is a whole training step.
    """

    name: str
    summary: str
    setup: Callable[..., Problem]
    small: dict[str, Any]
    objective: Callable[..., Any]
    numpy_objective: Callable[..., float]
    numpy_gradient: Callable[..., tuple[Any, ...]]
    jax_objective: Callable[..., Any]
    rtol: float
    transform: str = "gradient"
    optimiser: Any = None
    eager_objective: Callable[..., Any] | None = None

    def small_problem(self) -> Problem:
        """A float64 instance small enough for finite differences."""
        return self.setup(**self.small)
