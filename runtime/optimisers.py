"""Optimisers written in the DSL: `Descent`, `Momentum`, `Nesterov`, `Adam`, `AdamW`.

Each rule defines its arithmetic once, as a pure function
`rule(param, grad, state) -> (new_param, new_state)` made of DSL operations, so it runs
eagerly on numpy arrays and also traces into compiled code. `setup(rule, model)` gives
a state tree mirroring the model (a `Leaf` per trainable array), `apply` computes one
step without side effects, and `update` performs it in place on the model's arrays and
the state.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from pullback.dsl import core, sqrt
from pullback.dsl.pytree import Tree, children, flatten
from pullback.dsl.trace import Trace
from pullback.dsl.tracer import Tracer

# -- the rules ----------------------------------------------------------------------------


def _real(name: str, value: Any, low: float, high: float = np.inf) -> float:
    """`value` as a Python float, checked to lie in [low, high)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    out = float(value)
    if not low <= out < high:
        raise ValueError(f"{name} must lie in [{low}, {high}), got {out}")
    return out


class Rule(abc.ABC):
    """An optimisation rule: `init(param)` makes a parameter's state, calling it steps."""

    def init(self, param: np.ndarray) -> Any:
        """The initial state for one parameter array (None: stateless)."""
        return None

    @abc.abstractmethod
    def __call__(self, param: Any, grad: Any, state: Any) -> tuple[Any, Any]:
        """One step for one parameter: `(new_param, new_state)`; pure DSL arithmetic."""


@dataclasses.dataclass(frozen=True)
class Descent(Rule):
    """Plain gradient descent: `p ← p − lr·g`. No state."""

    lr: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", _real("lr", self.lr, 0.0))

    def __call__(self, param: Any, grad: Any, state: Any) -> tuple[Any, Any]:
        return param - self.lr * grad, None


@dataclasses.dataclass(frozen=True)
class _Velocity(Rule):
    """Rules whose state is one velocity `v ← rho·v + g`."""

    lr: float = 0.01
    rho: float = 0.9

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", _real("lr", self.lr, 0.0))
        object.__setattr__(self, "rho", _real("rho", self.rho, 0.0, 1.0))

    def init(self, param: np.ndarray) -> np.ndarray:
        return np.zeros_like(param)


@dataclasses.dataclass(frozen=True)
class Momentum(_Velocity):
    """Heavy-ball momentum: `v ← rho·v + g`, `p ← p − lr·v`. State: the velocity `v`."""

    def __call__(self, param: Any, grad: Any, state: Any) -> tuple[Any, Any]:
        v = self.rho * state + grad
        return param - self.lr * v, v


@dataclasses.dataclass(frozen=True)
class Nesterov(_Velocity):
    """Nesterov momentum: `v ← rho·v + g`, `p ← p − lr·(g + rho·v)`. State: `v`."""

    def __call__(self, param: Any, grad: Any, state: Any) -> tuple[Any, Any]:
        v = self.rho * state + grad
        return param - self.lr * (grad + self.rho * v), v


class AdamState(NamedTuple):
    """Adam's per-parameter state: the two moment estimates and the step count `t`.

    `t` is a 0-d float array of the parameter's dtype, so it is updated in place too.
    """

    m: Any
    v: Any
    t: Any


def _adam_init(param: np.ndarray) -> AdamState:
    return AdamState(np.zeros_like(param), np.zeros_like(param), np.zeros((), param.dtype))


def _adam_direction(grad: Any, state: AdamState, betas: tuple[float, float],
                    eps: float) -> tuple[Any, AdamState]:
    """The bias-corrected Adam step direction `m̂/(√v̂ + eps)` and the new state."""
    b1, b2 = betas
    t = state.t + 1.0
    m = b1 * state.m + (1.0 - b1) * grad
    v = b2 * state.v + (1.0 - b2) * (grad * grad)
    m_hat = m / (1.0 - b1 ** t)
    v_hat = v / (1.0 - b2 ** t)
    return m_hat / (sqrt(v_hat) + eps), AdamState(m, v, t)


def _betas(value: Any) -> tuple[float, float]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {value!r}")
    return _real("betas[0]", value[0], 0.0, 1.0), _real("betas[1]", value[1], 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Adam(Rule):
    """Adam with bias correction. State: `AdamState(m, v, t)`.

    `m ← b1·m + (1−b1)·g`, `v ← b2·v + (1−b2)·g²`, `t ← t + 1`,
    `p ← p − lr·m̂/(√v̂ + eps)` with `m̂ = m/(1−b1^t)`, `v̂ = v/(1−b2^t)`.
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", _real("lr", self.lr, 0.0))
        object.__setattr__(self, "betas", _betas(self.betas))
        object.__setattr__(self, "eps", _real("eps", self.eps, 0.0))

    def init(self, param: np.ndarray) -> AdamState:
        return _adam_init(param)

    def __call__(self, param: Any, grad: Any, state: Any) -> tuple[Any, Any]:
        direction, new_state = _adam_direction(grad, state, self.betas, self.eps)
        return param - self.lr * direction, new_state


@dataclasses.dataclass(frozen=True)
class AdamW(Rule):
    """Adam with decoupled weight decay: `p ← p − lr·(m̂/(√v̂ + eps) + decay·p)`."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    decay: float = 1e-2

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", _real("lr", self.lr, 0.0))
        object.__setattr__(self, "betas", _betas(self.betas))
        object.__setattr__(self, "eps", _real("eps", self.eps, 0.0))
        object.__setattr__(self, "decay", _real("decay", self.decay, 0.0))

    def init(self, param: np.ndarray) -> AdamState:
        return _adam_init(param)

    def __call__(self, param: Any, grad: Any, state: Any) -> tuple[Any, Any]:
        direction, new_state = _adam_direction(grad, state, self.betas, self.eps)
        return param - self.lr * (direction + self.decay * param), new_state


# -- state trees --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Leaf:
    """The optimiser state of one trainable array: its rule and the rule's state."""

    rule: Rule
    state: Any


def trainable(x: Any) -> bool:
    """Whether a model leaf is optimised: a writeable floating-point numpy array."""
    return isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.flags.writeable


def _is_param(x: Any) -> bool:
    """A trainable array, or a traced floating-point array standing for one."""
    return trainable(x) or (isinstance(x, Tracer) and x.dtype.kind == "f")


def _rebuild(kind: str, meta: Any, values: list[Any]) -> Any:
    """A container of `kind`/`meta` (as `pytree.children` reports them) holding `values`."""
    return Tree(kind, meta, tuple(Tree("leaf") for _ in values)).unflatten(values)


def setup(rule: Rule, model: Any) -> Any:
    """The initial optimiser state for `model`, a pytree of arrays.

    Args:
      rule: an optimisation rule, such as `Adam(1e-3)`.
      model: a pytree (tuples, lists, dicts, NamedTuples, dataclasses) of arrays.

    Returns:
      A pytree of the model's structure with a `Leaf(rule, state)` for every
      floating-point numpy array and None for every other leaf (constants).
    """
    if not isinstance(rule, Rule):
        raise TypeError(f"setup needs an optimisation rule such as pb.optimisers.Adam(), "
                        f"got {type(rule).__name__}")
    node = children(model)
    if node is None:
        return Leaf(rule, rule.init(model)) if trainable(model) else None
    kind, meta, items = node
    return _rebuild(kind, meta, [setup(rule, item) for item in items])


Step = Callable[[str, Leaf, np.ndarray, Any], tuple[Any, Any]]


def _labels(kind: str, meta: Any, n: int) -> list[str]:
    if kind == "dict":
        return [f"[{k!r}]" for k in meta]
    if kind == "namedtuple":
        return [f".{name}" for name in meta._fields]
    if kind == "dataclass":
        return [f".{name}" for name in meta[1]]
    return [f"[{i}]" for i in range(n)]


def _matching(grads: Any, kind: str, meta: Any, n: int, path: str) -> list[Any]:
    """The children of `grads`, which must be a container like the model's at `path`."""
    node = children(grads)
    if node is None or node[0] != kind or len(node[2]) != n:
        raise ValueError(
            f"grads do not match the model at {path}: the model has a {kind} of {n} "
            f"entries there, grads have {_describe(grads)}")
    if kind == "dict":
        found = dict(zip(node[1], node[2]))
        if set(found) != set(meta):
            raise ValueError(f"grads do not match the model at {path}: the model has keys "
                             f"{sorted(map(str, meta))}, grads have {sorted(map(str, found))}")
        return [found[k] for k in meta]
    return node[2]


def _describe(x: Any) -> str:
    node = children(x)
    if node is None:
        return f"a leaf of type {type(x).__name__}"
    return f"a {node[0]} of {len(node[2])} entries"


def _walk(state: Any, model: Any, grads: Any, path: str, step: Step) -> tuple[Any, Any]:
    """`(model, state)` with `step` applied at every trainable leaf that has a gradient."""
    if grads is None:
        return model, state
    node = children(model)
    if node is None:
        if state is None and not _is_param(model):
            return model, state
        if not isinstance(state, Leaf) or not _is_param(model):
            raise ValueError(f"the optimiser state does not match the model at {path}; "
                             "make it with pb.optimisers.setup(rule, model)")
        return step(path, state, model, grads)
    kind, meta, items = node
    snode = children(state)
    if snode is None or snode[0] != kind or len(snode[2]) != len(items):
        raise ValueError(f"the optimiser state does not match the model at {path}; "
                         "make it with pb.optimisers.setup(rule, model)")
    gs = _matching(grads, kind, meta, len(items), path)
    labels = _labels(kind, meta, len(items))
    pairs = [_walk(s, m, g, path + label, step)
             for s, m, g, label in zip(snode[2], items, gs, labels)]
    return (_rebuild(kind, meta, [p[0] for p in pairs]),
            _rebuild(snode[0], snode[1], [p[1] for p in pairs]))


def _check_grad(path: str, param: Any, grad: Any) -> None:
    shape = tuple(np.shape(grad))
    if shape != tuple(param.shape):
        raise ValueError(f"the gradient for the model's array at {path} has shape {shape}, "
                         f"but the array has shape {tuple(param.shape)}")


def apply(state: Any, model: Any, grads: Any) -> tuple[Any, Any]:
    """One optimiser step without side effects: `(new_model, new_state)`.

    Works on numpy arrays and inside traced code alike; `update` is the in-place form.
    """
    def step(path: str, leaf: Leaf, param: Any, grad: Any) -> tuple[Any, Any]:
        _check_grad(path, param, grad)
        new_param, new_state = leaf.rule(param, grad, leaf.state)
        return new_param, Leaf(leaf.rule, new_state)

    return _walk(state, model, grads, "model", step)


def _check(path: str, leaf: Leaf, param: Any, grad: Any) -> tuple[Any, Any]:
    """Validate one leaf before anything is written, so a bad input changes nothing."""
    _check_grad(path, param, grad)
    return param, leaf


def _traced_step(trace: Trace) -> Step:
    """One leaf of `update` inside a traced function: the rule is traced on the state
    arrays as inputs, and the parameter and state arrays are written in place
    (`Trace.write`), so the compiled function updates the caller's arrays."""
    def step(path: str, leaf: Leaf, param: Any, grad: Any) -> tuple[Any, Any]:
        p = core.lift(trace, param)
        old_leaves, tree = flatten(leaf.state)
        traced = [trace.hidden_input(a) if isinstance(a, np.ndarray) else a
                  for a in old_leaves]
        new_param, new_state = leaf.rule(p, core.lift(trace, grad, p.dtype),
                                         tree.unflatten(traced))
        new_leaves, _ = flatten(new_state)
        _check_shapes(path, [param, *old_leaves], [new_param, *new_leaves])
        for dst, src in zip(traced, new_leaves):
            if isinstance(dst, Tracer):
                trace.write(dst, core.lift(trace, src, dst.dtype))
        trace.write(p, core.lift(trace, new_param, p.dtype))
        return param, leaf

    return step


def _trace_of(model: Any, grads: Any) -> Trace | None:
    """The trace `update` runs in: that of any traced model array or gradient."""
    leaves = [*flatten(model)[0], *flatten(grads)[0]]
    traced = [x for x in leaves if isinstance(x, Tracer)]
    return traced[0].trace if traced else None


def _check_shapes(path: str, old: list[Any], new: list[Any]) -> None:
    """A rule's new parameter and state must have the shapes of the old ones."""
    for k, (dst, src) in enumerate(zip(old, new)):
        if dst is not None and np.shape(src) != np.shape(dst):
            what = "parameter" if k == 0 else f"state array {k - 1}"
            raise ValueError(f"the optimiser rule returned a new {what} of shape "
                             f"{np.shape(src)} for the model's array at {path}, which has "
                             f"shape {np.shape(dst)}")


def update(state: Any, model: Any, grads: Any) -> None:
    """Apply one optimiser step in place to the model's arrays and to `state`.

    Inside a traced function (`pb.compile`) the step is compiled: the compiled function
    writes the model's arrays and the state's arrays in place when it runs.

    Args:
      state: from `setup(rule, model)`.
      model: the pytree of arrays being trained; its arrays are overwritten.
      grads: a pytree like `model` (as `pb.gradient` returns it); None entries, at a
        leaf or for a whole subtree, leave those arrays and their state unchanged.
    """
    def step(path: str, leaf: Leaf, param: np.ndarray, grad: Any) -> tuple[Any, Any]:
        new_param, new_state = leaf.rule(param, np.asarray(grad, dtype=param.dtype), leaf.state)
        old_leaves, _ = flatten(leaf.state)
        new_leaves, _ = flatten(new_state)
        _check_shapes(path, [param, *old_leaves], [new_param, *new_leaves])
        for dst, src in zip(old_leaves, new_leaves):
            if dst is not None:
                np.copyto(dst, src, casting="same_kind")
        np.copyto(param, new_param, casting="same_kind")
        return param, leaf

    _walk(state, model, grads, "model", _check)
    trace = _trace_of(model, grads)
    _walk(state, model, grads, "model", step if trace is None else _traced_step(trace))


def _compiled_eager_update(state: Any, model: Any,
                           mark: Callable[[str, Any, Rule, Any], Any]) -> Any:
    """`model` with `mark(path, array, rule, rule_state)` at every trainable array: how
    `pb.eager_update(state, model, update)` compiles each array's step into the
    backward pass."""
    def step(path: str, leaf: Leaf, param: Any, grad: Any) -> tuple[Any, Any]:
        return mark(path, param, leaf.rule, leaf.state), leaf

    return _walk(state, model, model, "model", step)[0]


update.compiled_eager_update = _compiled_eager_update  # type: ignore[attr-defined]

__all__ = ["Adam", "AdamState", "AdamW", "Descent", "Leaf", "Momentum", "Nesterov", "Rule",
           "apply", "setup", "trainable", "update"]
