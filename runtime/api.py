"""gradient, withgradient and pullback: reverse-mode derivatives through compiled code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from pullback import devices, pipeline, traced_gradient
from pullback.dsl import dtypes
from pullback.dsl.pytree import first_entry, flatten
from pullback.dsl.trace import current_trace
from pullback.params import Grads, Params
from pullback.program import Program, ResultIndex, trace_call
from pullback.results import gradients, output_value, param_gradients, value_leaf


class WithGradient(NamedTuple):
    """The value of a function and its derivatives: one per argument, or `Grads`."""

    val: Any
    grad: tuple[Any, ...] | Grads


def _derivatives(program: Program, params: Params | None, leaves: list[Any],
                 grad_args: tuple[int, ...], grads: list[Any]) -> tuple[Any, ...] | Grads:
    if params is not None:
        return param_gradients(program, params, grad_args, grads)
    return gradients(program, leaves, grad_args, grads)


def _primary_result(program: Program, fname: str) -> int | None:
    """The result index of the differentiated (first) output, None if it is a constant."""
    first, is_container = first_entry(program.out_tree.unflatten(program.out_leaves))
    leaf = program.out_leaves[0] if program.out_leaves else None
    if is_container and program.out_tree.children[0].kind != "leaf":
        raise TypeError(
            f"{fname} differentiates the first entry of the returned "
            f"{program.out_tree.kind}, which must be a real number, but it is a "
            f"{program.out_tree.children[0].kind}")
    if not isinstance(leaf, ResultIndex):
        if isinstance(first, int | float | np.number) and not isinstance(first, bool):
            return None
        if isinstance(first, np.ndarray) and first.ndim == 0 and first.dtype.kind in "fi":
            return None
        raise TypeError(f"{fname} needs the function to return a real number, got {first!r}")
    shape, dtype = program.result_types()[leaf]
    if shape != ():
        raise TypeError(
            f"{fname} needs the function to return a real scalar, but it returned an array "
            f"of shape {shape}. For a vector output use pb.jacobian(f, ...) for the full "
            f"Jacobian, or pb.pullback(f, ...) for vector-Jacobian products.")
    if dtype.kind != "f":
        raise TypeError(f"{fname} needs a real (floating point) output, got dtype {dtype}")
    return leaf


def _run_gradient(f: Callable[..., Any], args: tuple[Any, ...], device: str | None,
                  fname: str) -> WithGradient:
    if not callable(f):
        raise TypeError(f"{fname} needs a callable as its first argument, got {type(f).__name__}")
    trace = current_trace()
    if trace is not None:
        region = traced_gradient.record(trace, f, args, fname)
        return WithGradient(*region.gradient(_primary_result(region.program, fname)))
    dev = devices.resolve(device)
    program, params = trace_call(f, args, fname)
    primary = _primary_result(program, fname)
    leaves, _ = flatten(tuple(args))
    if primary is None:
        mode, cts = "value", ()
    else:
        mode, cts = "gradient", (primary,)
    built = pipeline.compiled(program, mode, dev, cotangents=cts)
    outs = built.run(program.arguments(leaves))
    results, grads = outs[:built.num_results], outs[built.num_results:]
    return WithGradient(output_value(program, results),
                        _derivatives(program, params, leaves, built.grad_args, grads))


def gradient(f: Callable[..., Any], *args: Any,
             device: str | None = None) -> tuple[Any, ...] | Grads:
    """Derivatives of a real-valued `f` at `args`, one per argument.

    Args:
      f: a function of arrays, numbers and pytrees of them, returning a real scalar (or
        a tuple/dict/NamedTuple/dataclass whose first entry is one; the rest is auxiliary).
      *args: the point. Python ints are promoted to float64; integer arrays keep their
        dtype (derivatives float64, None where only used as indices). Or, in implicit
        mode, one `pb.Params` and a zero-argument `f`: the derivatives are with respect
        to the parameters `f` reads.
      device: "cpu" (default; see `pb.device`).

    Returns:
      A tuple with one entry per argument, shaped like it; None where the output does not
      depend on the argument or the argument is not numeric. In implicit mode, `Grads`
      keyed by the parameters. Called inside a traced function (`pb.compile`, or the
      function of another derivative), the derivatives are traced values computed by
      the enclosing compiled function, which also decides the device; they are taken
      with respect to the arguments only, not the traced values `f` closes over.

    Example:
      >>> pb.gradient(lambda x, y: x / y, 1, 2)
      (0.5, -0.25)
      >>> w = pb.array([3.0])
      >>> pb.gradient(lambda: pb.sum(w ** 2), pb.Params([w]))[w]
      array([6.])
    """
    return _run_gradient(f, args, device, "gradient").grad


def withgradient(f: Callable[..., Any], *args: Any, device: str | None = None) -> WithGradient:
    """Like `gradient`, also returning the whole output: a named tuple `(val, grad)`."""
    return _run_gradient(f, args, device, "withgradient")


def pullback(f: Callable[..., Any], *args: Any, device: str | None = None
             ) -> tuple[Any, Callable[[Any], tuple[Any, ...] | Grads]]:
    """The output `y` of `f(*args)` and `back(dy)`, the vector-Jacobian product.

    `dy` has the structure of `y` (None entries count as zeros); `back` returns one
    derivative per argument, like `gradient` (`Grads` for `pullback(f, ps)`).
    """
    if not callable(f):
        raise TypeError(f"pullback needs a callable as its first argument, got {type(f).__name__}")
    if current_trace() is not None:
        raise traced_gradient.not_in_trace("pullback")
    dev = devices.resolve(device)
    program, params = trace_call(f, args, "pullback")
    program.check_runs_once("pb.pullback")
    leaves, _ = flatten(tuple(args))
    inputs = program.arguments(leaves)
    value = pipeline.compiled(program, "value", dev)
    y = output_value(program, value.run(inputs))
    types = program.result_types()
    float_results = tuple(i for i, (_, dt) in enumerate(types) if dt.kind == "f")

    def back(dy: Any) -> tuple[Any, ...] | Grads:
        cts = _cotangents(program, dy, types, float_results)
        built = pipeline.compiled(program, "pullback", dev, cotangents=float_results)
        outs = built.run(inputs + cts)
        return _derivatives(program, params, leaves, built.grad_args, outs[built.num_results:])

    return y, back


def _cotangents(program: Program, dy: Any, types: list, float_results: tuple[int, ...]) -> list:
    dy_leaves, dy_tree = flatten(dy)
    if dy_tree != program.out_tree and dy_tree.kind == "leaf" and program.out_tree.kind != "leaf":
        raise ValueError("back(dy) needs dy with the structure of the function's output")
    if len(dy_leaves) != len(program.out_leaves):
        raise ValueError(
            f"back(dy) needs dy with the structure of the output ({len(program.out_leaves)} "
            f"leaves), got {len(dy_leaves)} leaves")
    by_result = {}
    for out, d in zip(program.out_leaves, dy_leaves):
        if isinstance(out, ResultIndex):
            by_result[out] = d
    cts = []
    for r in float_results:
        shape, dtype = types[r]
        d = by_result.get(r)
        dtypes.refuse_unsupported(d, "a cotangent passed to back(dy)")
        arr = np.zeros(shape, dtype) if d is None else np.asarray(d, dtype=dtype)
        if arr.shape != shape:
            raise ValueError(
                f"back(dy): the cotangent for an output of shape {shape} has shape {arr.shape}")
        cts.append(np.asarray(arr, order="C"))
    return cts


__all__ = ["WithGradient", "gradient", "pullback", "value_leaf", "withgradient"]
