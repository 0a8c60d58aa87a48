"""jacobian, withjacobian, hessian, hessian_reverse and diaghessian: batched derivatives,
each computed by one native call.

A Jacobian is the pullback batched over its cotangent: `autodiff`, then `vmap` over
the cotangent argument, fed the identity, so row k is the gradient of output element
k (row-major order). A Hessian is the gradient's derivative batched over the
direction: `jvp` over `autodiff` (forward over reverse) or `autodiff` twice (reverse
over reverse), then `vmap` over the tangents (or the gradients' cotangents), fed the
identity. Derivatives are taken with respect to the top-level arguments that are
numbers or numeric arrays; every other argument gets `None`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from pullback import devices, pipeline
from pullback.program import DIFF, Program, input_array, trace_program
from pullback.pytree import flatten
from pullback.results import output_value, value_leaf


class WithJacobian(NamedTuple):
    """The value of a function and its Jacobians, one per argument."""

    val: Any
    grad: tuple[Any, ...]


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(
        x, bool | np.bool_)


def _is_numeric(x: Any) -> bool:
    """A number or an integer/float array: the arguments that get a derivative slot."""
    return _is_number(x) or (isinstance(x, np.ndarray) and x.dtype.kind in "iuf")


@dataclasses.dataclass
class _Traced:
    """A traced call; `position[i]` is the function argument of user argument i (None if it
    is not numeric, or was passed to the function as a fixed Python value)."""

    program: Program
    leaves: list[Any]
    position: list[int | None]


def _traced_call(f: Callable[..., Any], args: tuple[Any, ...], fname: str) -> _Traced:
    """Trace `f(*args)`. Python integers the function needs as concrete values (an axis,
    a length) make tracing fail; then they are fixed and get zero derivatives."""
    if not callable(f):
        raise TypeError(f"{fname} needs a callable as its first argument, got {type(f).__name__}")
    fixed = [isinstance(a, int | np.integer) and not isinstance(a, bool) for a in args]
    try:
        return _trace(f, args, [False] * len(args))
    except TypeError as error:
        if not any(fixed):
            raise
        try:
            return _trace(f, args, fixed)
        except TypeError:
            raise error from None


def _trace(f: Callable[..., Any], args: tuple[Any, ...], fixed: list[bool]) -> _Traced:
    free = [a for a, fx in zip(args, fixed, strict=True) if not fx]

    def bound(*values: Any) -> Any:
        it = iter(values)
        return f(*(a if fx else next(it) for a, fx in zip(args, fixed, strict=True)))

    program = trace_program(bound, free)
    leaves, _ = flatten(tuple(free))
    traced = program.traced_leaves
    position: list[int | None] = []
    leaf = 0
    for a, fx in zip(args, fixed, strict=True):
        if fx:
            position.append(None)
            continue
        position.append(traced.index(leaf) if _is_numeric(a) else None)
        leaf += len(flatten(a)[0])
    return _Traced(program, leaves, position)


def _single_output(program: Program, fname: str) -> Any:
    """The one output leaf: a result index, or the constant the function returned."""
    if program.out_tree.kind != "leaf":
        raise TypeError(
            f"{fname} needs the function to return one array or number, got a "
            f"{program.out_tree.kind}")
    leaf = program.out_leaves[0]
    if isinstance(leaf, int):
        shape, dtype = program.result_types()[leaf]
        if dtype.kind != "f":
            raise TypeError(f"{fname} needs a real (floating point) output, got dtype {dtype}")
        return leaf
    if not _is_numeric(leaf):
        raise TypeError(f"{fname} needs the function to return a real array or number, "
                        f"got {leaf!r}")
    return np.asarray(leaf, dtype=np.float64)


def _arg_dtype(x: Any) -> np.dtype:
    arr = np.asarray(x)
    return arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)


# ----------------------------------------------------------------------------
# Jacobians
# ----------------------------------------------------------------------------


def _run_jacobian(f: Callable[..., Any], args: tuple[Any, ...], device: str | None,
                  fname: str) -> WithJacobian:
    dev = devices.resolve(device)
    t = _traced_call(f, args, fname)
    program = t.program
    out = _single_output(program, fname)
    wrt = tuple(p for p in t.position if p is not None)
    inputs = program.arguments(t.leaves)
    grads: dict[int, np.ndarray] = {}
    if not isinstance(out, int):
        y = out
        value: Any = value_leaf(out)
    elif not wrt:
        built = pipeline.compiled(program, "value", dev)
        results = built.run(inputs)
        y, value = results[out], output_value(program, results)
    else:
        shape, dtype = program.result_types()[out]
        m = int(np.prod(shape, dtype=np.int64))
        seeds = np.eye(m, dtype=dtype).reshape((m, *shape))
        built = pipeline.compiled(program, "jacobian", dev, cotangents=(out,), wrt=wrt)
        outs = built.run([*inputs, seeds])
        results = outs[:built.num_results]
        y, value = results[out], output_value(program, results)
        grads = dict(zip(built.grad_args, outs[built.num_results:], strict=True))
    rows = int(np.asarray(y).size)
    jac = []
    for a, p in zip(args, t.position, strict=True):
        if not _is_numeric(a):
            jac.append(None)
            continue
        cols = int(np.asarray(a).size)
        g = grads.get(p) if p is not None else None
        if g is None:
            g = np.zeros((rows, cols), dtype=_arg_dtype(a))
        jac.append(g.reshape(rows) if _is_number(a) else g.reshape(rows, cols))
    return WithJacobian(value, tuple(jac))


def jacobian(f: Callable[..., Any], *args: Any, device: str | None = None) -> tuple[Any, ...]:
    """The Jacobian of `f` at `args`, one matrix per argument, from one native call.

    Args:
      f: a function returning one real array or number `y`.
      *args: the point. Integer inputs are promoted to float64.
      device: "cpu" (default; see `pb.device`).

    Returns:
      A tuple with one entry per argument: for an array `a` the matrix of shape
      `(y.size, a.size)` with `J[k, i] = d y.ravel()[k] / d a.ravel()[i]`; for a number a
      vector of length `y.size`; `None` for anything else (strings, containers, objects).
      Arguments the output does not depend on get zeros.

    Example:
      >>> pb.jacobian(lambda a, x: a ** 2 * x, np.array([1, 2, 3]), 1)[1]
      array([1., 4., 9.])
    """
    return _run_jacobian(f, args, device, "jacobian").grad


def withjacobian(f: Callable[..., Any], *args: Any, device: str | None = None) -> WithJacobian:
    """Like `jacobian`, also returning the value: a named tuple `(val, grad)`."""
    return _run_jacobian(f, args, device, "withjacobian")


# ----------------------------------------------------------------------------
# Hessians
# ----------------------------------------------------------------------------


def _scalar_output(program: Program, fname: str) -> int | None:
    """The result index of the real scalar output, None if the output is a constant."""
    out = _single_output(program, fname)
    if not isinstance(out, int):
        if out.shape != ():
            raise TypeError(f"{fname} needs the function to return a real scalar, got an "
                            f"array of shape {out.shape}; use pb.jacobian for array outputs")
        return None
    shape, _ = program.result_types()[out]
    if shape != ():
        raise TypeError(
            f"{fname} needs the function to return a real scalar, but it returned an array "
            f"of shape {shape}. For an array output use pb.jacobian(f, ...), or the "
            f"jacobian of a gradient for second derivatives of each output element.")
    return out


def _second_derivatives(f: Callable[..., Any], args: tuple[Any, ...], device: str | None,
                        mode: str, fname: str) -> tuple[list[np.ndarray | None], list[int]]:
    """For each numeric argument i, the rows `d grad_i / d direction` of shape (N, n_i),
    N the total size of the numeric arguments (None for other arguments); and the
    offset of each argument among the N directions."""
    dev = devices.resolve(device)
    t = _traced_call(f, args, fname)
    program = t.program
    out = _scalar_output(program, fname)
    sizes = [int(np.asarray(a).size) if _is_numeric(a) else 0 for a in args]
    offsets = [int(v) for v in np.cumsum([0, *sizes[:-1]])]
    total = sum(sizes)
    wrt = tuple(p for p in t.position if p is not None)
    blocks: dict[int, np.ndarray] = {}
    if out is not None and wrt:
        built = pipeline.compiled(program, mode, dev, wrt=wrt)
        inputs = program.arguments(t.leaves)
        for p in built.batched_args:
            i = t.position.index(p)
            arr = input_array(args[i], DIFF)
            seed = np.zeros((total, sizes[i]), dtype=arr.dtype)
            seed[offsets[i]:offsets[i] + sizes[i]] = np.eye(sizes[i], dtype=arr.dtype)
            inputs.append(seed.reshape((total, *arr.shape)))
        outs = built.run(inputs)
        blocks = dict(zip(built.grad_args, outs[built.num_results:], strict=True))
    rows: list[np.ndarray | None] = []
    for a, p, n in zip(args, t.position, sizes, strict=True):
        if not _is_numeric(a):
            rows.append(None)
            continue
        block = blocks.get(p) if p is not None else None
        rows.append(np.zeros((total, n), _arg_dtype(a)) if block is None
                    else block.reshape(total, n))
    return rows, offsets


def _hessian(f: Callable[..., Any], x: Any, device: str | None, mode: str, fname: str) -> Any:
    if not _is_numeric(x):
        raise TypeError(f"{fname} needs x to be a number or a numeric array, got "
                        f"{type(x).__name__}; use pb.diaghessian for several arguments")
    (h,), _ = _second_derivatives(f, (x,), device, mode, fname)
    assert h is not None
    return float(h[0, 0]) if _is_number(x) else h


def hessian(f: Callable[..., Any], x: Any, *, device: str | None = None) -> Any:
    """The Hessian of a real-valued `f` at `x`, forward over reverse, from one native call.

    Args:
      f: a function of one argument returning a real scalar.
      x: a number or an array (integers are promoted to float64).
      device: "cpu" (default; see `pb.device`).

    Returns:
      For an array `x`, the matrix of shape `(x.size, x.size)` in row-major linear
      indexing; for a number, a number.

    Example:
      >>> pb.hessian(lambda x: x[0] * x[1], np.array([2.0, 3.0]))
      array([[0., 1.],
             [1., 0.]])
    """
    return _hessian(f, x, device, "hessian", "hessian")


def hessian_reverse(f: Callable[..., Any], x: Any, *, device: str | None = None) -> Any:
    """Like `hessian`, computed reverse over reverse (the same numbers)."""
    return _hessian(f, x, device, "hessian_reverse", "hessian_reverse")


def diaghessian(f: Callable[..., Any], *args: Any, device: str | None = None) -> tuple[Any, ...]:
    """The diagonal of the Hessian of a real-valued `f`, one entry per argument.

    Entry i has the shape of argument i (a number for a number) and holds
    `d^2 f / d x_j^2` for each element x_j; `None` for arguments that are not numbers or
    arrays. All arguments are done in one native call, batched over every direction.
    """
    rows, offsets = _second_derivatives(f, args, device, "hessian", "diaghessian")
    out: list[Any] = []
    for a, r, start in zip(args, rows, offsets, strict=True):
        if r is None:
            out.append(None)
            continue
        n = r.shape[1]
        diag = r[start + np.arange(n), np.arange(n)]
        out.append(float(diag[0]) if _is_number(a) else diag.reshape(np.shape(a)))
    return tuple(out)


__all__ = ["WithJacobian", "diaghessian", "hessian", "hessian_reverse", "jacobian",
           "withjacobian"]
