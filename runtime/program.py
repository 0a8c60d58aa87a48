"""Tracing a user function with concrete arguments into a `Program`.

Arguments are flattened into leaves. Arrays and Python numbers become traced inputs:
Python numbers as float64, arrays with their own dtype (float64, float32, int64 or
bool). Where the function is differentiated, an integer array arrives as float64 and
is traced as int64 with that float64 input as its shadow (`dsl.integer_shadow`), so it
indexes and counts as numpy's integers do and carries a float64 derivative; in value
mode it is passed as int64. Boolean arrays are traced as masks; every other leaf
(strings, None, bools, objects) is passed to the function unchanged. Complex, masked,
object and string arrays are refused. The function's output is flattened the same way.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from pullback.compiler import undo
from pullback.compiler.dialects.array import AssignOp
from pullback.dsl import dtypes, integer_shadow
from pullback.dsl.eager_update import EagerUpdates, eager_updates
from pullback.dsl.errors import ForeignTracerError
from pullback.dsl.pytree import Tree, flatten
from pullback.dsl.trace import Trace, tracing
from pullback.dsl.tracer import Tracer
from pullback.params import Params

# What each input leaf is.
DIFF = "diff"      # a float or integer array, or a number: differentiable
MASK = "mask"      # a bool array: traced, never differentiated
STATIC = "static"  # anything else: passed through unchanged


def classify(leaf: Any, what: str = "an argument") -> str:
    """What an argument leaf is to a trace (refusing dtypes that would lose information)."""
    if isinstance(leaf, bool | np.bool_) or leaf is None:
        return STATIC
    dtypes.refuse_unsupported(leaf, what)
    if isinstance(leaf, int | float | np.integer | np.floating):
        return DIFF
    if isinstance(leaf, np.ndarray):
        return MASK if leaf.dtype == np.bool_ else DIFF
    return STATIC


def input_array(leaf: Any, kind: str, what: str = "an argument") -> np.ndarray:
    """The array a traced input leaf stands for: C-contiguous, of a supported dtype.

    Python (and numpy scalar) numbers are float64; arrays keep their dtype (integers as
    int64, float16 as float32)."""
    dtypes.refuse_unsupported(leaf, what)
    if not isinstance(leaf, np.ndarray):
        return np.asarray(leaf, dtype=np.float64)
    if kind == MASK or leaf.dtype.kind == "b":
        return np.asarray(leaf, order="C")
    if leaf.dtype.kind in "iu":
        return dtypes.as_int64(leaf, what)
    return np.asarray(leaf, dtype=dtypes.canonical(leaf.dtype), order="C")


def float_carrier(arr: np.ndarray, what: str = "an argument") -> np.ndarray:
    """An int64 array as the float64 input that carries it (and its derivative) into a
    differentiated program; refuses values float64 does not hold exactly."""
    limit = integer_shadow.MAX_EXACT
    if arr.size and (int(arr.max()) > limit or int(arr.min()) < -limit):
        raise ValueError(
            f"{what} is an integer array with values beyond 2**53 in magnitude; its "
            "derivative is carried in float64, which does not hold them exactly. Pass "
            "it to a function compiled with mode=\"value\", or close over it")
    return arr.astype(np.float64)


def hidden_array(value: np.ndarray) -> np.ndarray:
    """A closed-over array as passed to native code (its dtype kept, ints as int64)."""
    dtypes.refuse_unsupported(value, "a closed-over array")
    return np.asarray(value, dtype=dtypes.canonical(value.dtype), order="C")


class ResultIndex(int):
    """An output leaf that is the function's result number `int(self)`; any other output
    leaf (a plain `int` included) is a constant the function returned."""


@dataclasses.dataclass
class Program:
    """A traced function: its module, and how to map Python values to its arguments."""

    module: ModuleOp
    name: str
    in_tree: Tree
    in_kinds: list[str]          # per input leaf
    out_tree: Tree
    out_leaves: list[Any]        # per output leaf: a ResultIndex or a constant
    hidden: list[np.ndarray]     # closed-over arrays, appended after the traced inputs
    key: tuple[Any, ...]
    hidden_diff: list[bool] = dataclasses.field(default_factory=list)
    """Per hidden array: whether it is an implicit parameter (a differentiable input)."""
    eager: EagerUpdates | None = None
    """The arrays Python `eager_update` functions change in place; each run of
    `arguments` gets a token naming the caller's arrays (`EagerUpdates.for_call`)."""

    @property
    def writes_inputs(self) -> bool:
        """Whether the function writes some of its inputs in place (`array.assign`)."""
        return any(isinstance(op, AssignOp) for op in self.module.walk())

    def check_runs_once(self, what: str) -> None:
        """Refuse `what` (an API that runs the function twice: value, then derivative)
        when the function writes its inputs: the second run would see the writes."""
        if self.writes_inputs:
            raise NotImplementedError(
                f"{what} of a function that writes its inputs in place is not supported: "
                "its backward call would run the function again on the written arrays; "
                "use pb.gradient or pb.withgradient, which run it once")

    @property
    def traced_leaves(self) -> list[int]:
        """Input leaf indices that are function arguments, in argument order."""
        return [i for i, k in enumerate(self.in_kinds) if k != STATIC]

    def diff_args(self) -> list[int]:
        """Function-argument indices of the differentiable leaves, then of the parameters."""
        args = self.traced_leaves
        return ([a for a, leaf in enumerate(args) if self.in_kinds[leaf] == DIFF]
                + [a for a, _ in self.param_args()])

    def _is_param(self, h: int) -> bool:
        return h < len(self.hidden_diff) and self.hidden_diff[h]

    def param_args(self) -> list[tuple[int, np.ndarray]]:
        """(function-argument index, array) of each implicit parameter the function reads."""
        first = len(self.traced_leaves)
        return [(first + h, arr) for h, arr in enumerate(self.hidden) if self._is_param(h)]

    def result_types(self) -> list[tuple[tuple[int, ...], np.dtype]]:
        """(shape, dtype) of each result of the traced function."""
        fn = next(iter(self.module.ops))
        return [(tuple(t.get_shape()), dtypes.from_ir(t.element_type))
                for t in fn.function_type.outputs.data]

    def arguments(self, leaves: Sequence[Any]) -> list[np.ndarray]:
        """The native call's inputs for new leaves of the same structure.

        The caller's own arrays are passed wherever they have the compiled layout; a
        converted copy is made read-only, so that compiled code that writes an input in
        place refuses it instead of writing into the copy."""
        traced = self.traced_leaves
        wanted = self.input_dtypes
        ins = [_own(leaves[i], _passed(input_array(leaves[i], self.in_kinds[i]), wanted[k]))
               for k, i in enumerate(traced)]
        hidden = self.hidden
        if self.eager is not None:
            hidden = self.eager.for_call(hidden, [
                leaves[traced[p.arg]] if p.arg < len(traced) else self.hidden[p.arg - len(traced)]
                for p in self.eager.params], undo.save)
        first = len(traced)
        return ins + [_own(arr, _passed(input_array(arr, DIFF, "a parameter"), wanted[first + h])
                           if self._is_param(h) else hidden_array(arr))
                      for h, arr in enumerate(hidden)]

    @functools.cached_property
    def input_dtypes(self) -> list[np.dtype]:
        """The dtype native code takes for each function argument."""
        fn = next(iter(self.module.ops))
        return [dtypes.from_ir(t.element_type) for t in fn.function_type.inputs.data]


def _passed(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`arr` as the program takes it: an integer array of a differentiated program as its
    float64 carrier, anything else unchanged."""
    return float_carrier(arr) if arr.dtype.kind == "i" and dtype.kind == "f" else arr


def _own(leaf: Any, arr: np.ndarray) -> np.ndarray:
    """`arr`, made read-only unless it is the memory of the caller's `leaf` itself."""
    if not (isinstance(leaf, np.ndarray) and arr.nbytes == leaf.nbytes
            and arr.__array_interface__["data"][0] == leaf.__array_interface__["data"][0]):
        arr.flags.writeable = False
    return arr


def trace_program(fn: Callable[..., Any], args: Sequence[Any], name: str = "f",
                  params: Sequence[np.ndarray] = (), differentiate: bool = True) -> Program:
    """Trace `fn(*args)`; the program returns every traced output leaf.

    `params` are implicit parameters: each one `fn` reads becomes a differentiable
    input among the closed-over arrays, in first-read order (see `Program.param_args`).
    With `differentiate`, integer array arguments arrive as float64 carriers and are
    traced as int64 values with float64 shadows (see the module docstring).
    """
    leaves, in_tree = flatten(tuple(args))
    kinds = [classify(leaf) for leaf in leaves]
    trace = Trace(params)
    traced_args = []
    for leaf, kind in zip(leaves, kinds):
        if kind == STATIC:
            traced_args.append(leaf)
            continue
        arr = input_array(leaf, kind)
        if differentiate and arr.dtype.kind == "i":
            carrier = trace.new_input(arr.shape, np.dtype(np.float64))
            traced_args.append(integer_shadow.shadowed_input(trace, carrier))
        else:
            traced_args.append(trace.new_input(arr.shape, arr.dtype))
    with tracing(trace):
        out = fn(*in_tree.unflatten(traced_args))
    out_values, out_tree = flatten(out)
    results: list[Any] = []
    out_leaves: list[Any] = []
    for v in out_values:
        if isinstance(v, Tracer):
            if v.trace is not trace:
                raise ForeignTracerError(
                    "the function returned a traced value from another trace (a value "
                    "traced by an enclosing function, or kept from an earlier trace); return "
                    "values computed from this function's own arguments")
            out_leaves.append(ResultIndex(len(results)))
            results.append(integer_shadow.result(trace, v.value))
        else:
            out_leaves.append(v)
    module = trace.finish(results, name)
    return Program(module, name, in_tree, kinds, out_tree, out_leaves, list(trace.hidden),
                   trace.structural_key() + (tuple(kinds),), list(trace.hidden_diff),
                   eager_updates(trace))


def implicit_params(args: Sequence[Any], fname: str) -> Params | None:
    """The `Params` of an implicit-mode call `fname(f, ps)`, None for explicit arguments."""
    if not any(isinstance(a, Params) for a in args):
        return None
    if len(args) != 1:
        raise TypeError(
            f"{fname}(f, ps) with pb.Params takes the Params as its only argument after a "
            "zero-argument f (implicit mode); for explicit arguments pass arrays, not Params")
    return args[0]


def trace_call(fn: Callable[..., Any], args: Sequence[Any],
               fname: str) -> tuple[Program, Params | None]:
    """Trace a call `fname(fn, *args)`: explicit arguments, or implicit mode `(fn, ps)`.

    In implicit mode `fn` takes no arguments, the program's differentiable inputs are
    the parameters it reads (`Program.param_args`), and the Params are returned too, to
    key the results (`results.param_gradients`).
    """
    params = implicit_params(args, fname)
    if params is None:
        return trace_program(fn, args), None
    return trace_program(fn, (), params=list(params)), params
