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
from pullback.dsl import dtypes
from pullback.dsl.errors import ForeignTracerError
from pullback.dsl.pytree import flatten
from pullback.dsl.trace import current_trace
from pullback.dsl.tracer import Tracer
from pullback.mode_pipeline import Insertions
from pullback.params import Grads, IdDict, Params
from pullback.program import (
    DIFF,
    Program,
    ResultIndex,
    implicit_params,
    input_array,
    trace_program,
)
from pullback.results import output_value, value_leaf
from pullback.traced_gradient import not_in_trace


class WithJacobian(NamedTuple):
    """The value of a function and its Jacobians: one per argument, or `Grads`."""

    val: Any
    grad: tuple[Any, ...] | Grads


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
    fixed: list[Any] = dataclasses.field(default_factory=list)
    """Per user argument: the value it was fixed to, or None if it is traced."""

    def free_positions(self) -> list[int]:
        """The user arguments that are traced (not fixed)."""
        return [i for i, fx in enumerate(self.fixed) if fx is None]

    def free_args(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The traced arguments among new `args` (for compiled calls)."""
        if len(args) != len(self.position):
            raise TypeError(f"this compiled function takes {len(self.position)} arguments, "
                            f"got {len(args)}")
        for i, (a, fx) in enumerate(zip(args, self.fixed, strict=True)):
            if fx is not None and a != fx:
                raise TypeError(f"argument {i} is the integer {fx!r} in this compiled "
                                f"function (an integer the function needs as a Python value "
                                f"is fixed when compiling), got {a!r}; call pb.compile again")
        return tuple(args[i] for i in self.free_positions())

    def free_leaves(self, args: tuple[Any, ...]) -> list[Any]:
        """The leaves of the traced arguments among new `args`."""
        return flatten(self.free_args(args))[0]


def _traced_call(f: Callable[..., Any], args: tuple[Any, ...], fname: str) -> _Traced:
    """Trace `f(*args)`. Python integers the function needs as concrete values (an axis,
    a length) make tracing fail; then they are fixed and get zero derivatives."""
    if not callable(f):
        raise TypeError(f"{fname} needs a callable as its first argument, got {type(f).__name__}")
    nested = current_trace() is not None
    if nested and any(isinstance(leaf, Tracer) for leaf in flatten(args)[0]):
        raise not_in_trace(fname)
    fixed = [isinstance(a, int | np.integer) and not isinstance(a, bool) for a in args]
    try:
        return _trace(f, args, [False] * len(args))
    except ForeignTracerError as error:
        if nested:  # `f` uses values of the enclosing trace
            raise not_in_trace(fname) from error
        raise
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
    return _Traced(program, leaves, position,
                   [a if fx else None for a, fx in zip(args, fixed, strict=True)])


def _single_output(program: Program, fname: str) -> Any:
    """The one output leaf: a result index, or the constant the function returned."""
    if program.out_tree.kind != "leaf":
        raise TypeError(
            f"{fname} needs the function to return one array or number, got a "
            f"{program.out_tree.kind}")
    leaf = program.out_leaves[0]
    if isinstance(leaf, ResultIndex):
        shape, dtype = program.result_types()[leaf]
        if dtype.kind != "f":
            raise TypeError(f"{fname} needs a real (floating point) output, got dtype {dtype}")
        return leaf
    if not _is_numeric(leaf):
        raise TypeError(f"{fname} needs the function to return a real array or number, "
                        f"got {leaf!r}")
    return np.asarray(leaf, dtype=np.float64)


def _arg_dtype(x: Any) -> np.dtype:
    """The dtype of `x`'s derivative: float64 for integers, its own float type otherwise."""
    return dtypes.float_of(input_array(x, DIFF).dtype)


# ----------------------------------------------------------------------------
# Jacobians
# ----------------------------------------------------------------------------


class JacobianCall:
    """A Jacobian traced and compiled once: call it with arguments of the same signature.

    Explicit arguments, or implicit mode: a zero-argument `f` and one `pb.Params`, whose
    Jacobians come back as `Grads` (a `(y.size, p.size)` matrix per parameter).
    """

    def __init__(self, f: Callable[..., Any], args: tuple[Any, ...], device: str,
                 fname: str, keep_ir: bool = False, insertions: Insertions = ()):
        self.params: Params | None = implicit_params(args, fname)
        if self.params is None:
            self.traced = _traced_call(f, args, fname)
            wrt = tuple(p for p in self.traced.position if p is not None)
        else:
            if not callable(f):
                raise TypeError(f"{fname} needs a callable as its first argument, "
                                f"got {type(f).__name__}")
            program = trace_program(f, (), params=list(self.params))
            self.traced = _Traced(program, [], [None], [self.params])
            wrt = tuple(a for a, _ in program.param_args())
        program = self.traced.program
        self.out = _single_output(program, fname)
        self.built: pipeline.Built | None = None
        self._seeds: list[np.ndarray] = []
        # An empty output has an empty Jacobian (0 rows): only its value is computed.
        if isinstance(self.out, ResultIndex) and wrt and _result_size(program, self.out):
            shape, dtype = program.result_types()[self.out]
            m = _result_size(program, self.out)
            self._seeds = [np.eye(m, dtype=dtype).reshape((m, *shape))]
            self.built = pipeline.compiled(program, "jacobian", device, keep_ir=keep_ir,
                                           cotangents=(self.out,), wrt=wrt,
                                           insertions=insertions)
        elif isinstance(self.out, ResultIndex):
            self.built = pipeline.compiled(program, "value", device, keep_ir=keep_ir,
                                           insertions=insertions)

    def __call__(self, args: tuple[Any, ...]) -> WithJacobian:
        program = self.traced.program
        leaves = [] if self.params is not None else self.traced.free_leaves(args)
        grads: dict[int, np.ndarray] = {}
        if self.built is None:
            y, value = self.out, value_leaf(self.out)
        else:
            outs = self.built.run([*program.arguments(leaves), *self._seeds])
            results = outs[:self.built.num_results]
            y, value = results[self.out], output_value(program, results)
            grads = dict(zip(self.built.grad_args, outs[self.built.num_results:], strict=True))
        rows = int(np.asarray(y).size)
        if self.params is not None:
            return WithJacobian(value, self._param_jacobians(grads, rows))
        return WithJacobian(value, self._jacobians(args, grads, rows))

    def _jacobians(self, args: tuple[Any, ...], grads: dict[int, np.ndarray],
                   rows: int) -> tuple[Any, ...]:
        jac = []
        for a, p in zip(args, self.traced.position, strict=True):
            if not _is_numeric(a):
                jac.append(None)
                continue
            g = grads.get(p) if p is not None else None
            jac.append(_matrix(g, rows, a))
        return tuple(jac)

    def _param_jacobians(self, grads: dict[int, np.ndarray], rows: int) -> Grads:
        assert self.params is not None
        read = {id(arr): arg for arg, arr in self.traced.program.param_args()}
        out = IdDict()
        for p in self.params:
            arg = read.get(id(p))
            out[p] = _matrix(None if arg is None else grads.get(arg), rows, p)
        return Grads(self.params, out)


def _result_size(program: Program, out: ResultIndex) -> int:
    return int(np.prod(program.result_types()[out][0], dtype=np.int64))


def _matrix(g: np.ndarray | None, rows: int, a: Any) -> np.ndarray:
    """One argument's Jacobian block: (rows, a.size), a vector for a number; zeros where
    there is no derivative."""
    cols = int(np.asarray(a).size)
    if g is None:
        g = np.zeros((rows, cols), dtype=_arg_dtype(a))
    return g.reshape(rows) if _is_number(a) else g.reshape(rows, cols)


def _run_jacobian(f: Callable[..., Any], args: tuple[Any, ...], device: str | None,
                  fname: str) -> WithJacobian:
    return JacobianCall(f, args, devices.resolve(device), fname)(args)


def jacobian(f: Callable[..., Any], *args: Any,
             device: str | None = None) -> tuple[Any, ...] | Grads:
    """The Jacobian of `f` at `args`, one matrix per argument, from one native call.

    Args:
      f: a function returning one real array or number `y`.
      *args: the point. Python ints are promoted to float64; integer arrays keep their
        dtype (derivatives float64, None where only used as indices). Or, in implicit
        mode, one `pb.Params` and a zero-argument `f`.
      device: "cpu" (default; see `pb.device`).

    Returns:
      A tuple with one entry per argument: for an array `a` the matrix of shape
      `(y.size, a.size)` with `J[k, i] = d y.ravel()[k] / d a.ravel()[i]`; for a number a
      vector of length `y.size`; `None` for anything else (strings, containers, objects).
      Arguments the output does not depend on get zeros. In implicit mode, `Grads` with
      the `(y.size, p.size)` matrix of each parameter `p`.

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
    if not isinstance(out, ResultIndex):
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


class SecondDerivativeCall:
    """Second derivatives of a real-valued `f`, traced and compiled once.

    Calling it gives, for each numeric argument i, the rows `d grad_i / d direction` of
    shape (N, n_i), N the total size of the numeric arguments (None for other
    arguments); `offsets[i]` is where argument i's directions start among the N.
    """

    def __init__(self, f: Callable[..., Any], args: tuple[Any, ...], device: str, mode: str,
                 fname: str, keep_ir: bool = False, insertions: Insertions = ()):
        self.traced = _traced_call(f, args, fname)
        program = self.traced.program
        out = _scalar_output(program, fname)
        self.sizes = [int(np.asarray(a).size) if _is_numeric(a) else 0 for a in args]
        self.offsets = [int(v) for v in np.cumsum([0, *self.sizes[:-1]])]
        self.numeric = [_is_numeric(a) for a in args]
        self.dtypes = [_arg_dtype(a) if _is_numeric(a) else None for a in args]
        wrt = tuple(p for p in self.traced.position if p is not None)
        self.built: pipeline.Built | None = None
        self._seeds: list[np.ndarray] = []
        # No directions (only empty arrays) give empty second derivatives: nothing to run.
        if out is not None and wrt and sum(self.sizes):
            self.built = pipeline.compiled(program, mode, device, keep_ir=keep_ir, wrt=wrt,
                                           insertions=insertions)
            self._seeds = [self._seed(args, self.traced.position.index(p))
                           for p in self.built.batched_args]

    def _seed(self, args: tuple[Any, ...], i: int) -> np.ndarray:
        """Argument i's block of the identity over all N directions, shaped for the batch."""
        shape, dtype = np.shape(args[i]), _arg_dtype(args[i])
        total, n = sum(self.sizes), self.sizes[i]
        seed = np.zeros((total, n), dtype=dtype)
        seed[self.offsets[i]:self.offsets[i] + n] = np.eye(n, dtype=dtype)
        return seed.reshape((total, *shape))

    def __call__(self, args: tuple[Any, ...]) -> list[np.ndarray | None]:
        total = sum(self.sizes)
        blocks: dict[int, np.ndarray] = {}
        if self.built is not None:
            leaves = self.traced.free_leaves(args)
            outs = self.built.run([*self.traced.program.arguments(leaves), *self._seeds])
            blocks = dict(zip(self.built.grad_args, outs[self.built.num_results:], strict=True))
        rows: list[np.ndarray | None] = []
        for numeric, p, n, dt in zip(self.numeric, self.traced.position, self.sizes,
                                     self.dtypes, strict=True):
            if not numeric:
                rows.append(None)
                continue
            block = blocks.get(p) if p is not None else None
            rows.append(np.zeros((total, n), dt) if block is None else block.reshape(total, n))
        return rows


def hessian_of_rows(x: Any, rows: list[np.ndarray | None]) -> Any:
    """The Hessian of a one-argument call from its `SecondDerivativeCall` rows."""
    (h,) = rows
    assert h is not None
    return float(h[0, 0]) if _is_number(x) else h


def diagonal_of_rows(args: tuple[Any, ...], rows: list[np.ndarray | None],
                     offsets: list[int]) -> tuple[Any, ...]:
    """`diaghessian`'s result from `SecondDerivativeCall` rows."""
    out: list[Any] = []
    for a, r, start in zip(args, rows, offsets, strict=True):
        if r is None:
            out.append(None)
            continue
        n = r.shape[1]
        diag = r[start + np.arange(n), np.arange(n)]
        out.append(float(diag[0]) if _is_number(a) else diag.reshape(np.shape(a)))
    return tuple(out)


def check_hessian_argument(x: Any, fname: str) -> None:
    if isinstance(x, Tracer):
        raise not_in_trace(fname)
    dtypes.refuse_unsupported(x, f"the argument x of {fname}")
    if not _is_numeric(x):
        raise TypeError(f"{fname} needs x to be a number or a numeric array, got "
                        f"{type(x).__name__}; use pb.diaghessian for several arguments")


def _hessian(f: Callable[..., Any], x: Any, device: str | None, mode: str, fname: str) -> Any:
    check_hessian_argument(x, fname)
    call = SecondDerivativeCall(f, (x,), devices.resolve(device), mode, fname)
    return hessian_of_rows(x, call((x,)))


def hessian(f: Callable[..., Any], x: Any, *, device: str | None = None) -> Any:
    """The Hessian of a real-valued `f` at `x`, forward over reverse, from one native call.

    Args:
      f: a function of one argument returning a real scalar.
      x: a number or an array (an integer array keeps its dtype; derivatives are float64).
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
    call = SecondDerivativeCall(f, args, devices.resolve(device), "hessian", "diaghessian")
    return diagonal_of_rows(args, call(args), call.offsets)


__all__ = ["JacobianCall", "SecondDerivativeCall", "WithJacobian", "diaghessian", "hessian",
           "hessian_reverse", "jacobian", "withjacobian"]
