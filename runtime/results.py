"""Turning native outputs back into the user's structures (values and derivatives)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pullback.params import Grads, IdDict, Params
from pullback.program import DIFF, Program, ResultIndex


def _is_number(leaf: Any) -> bool:
    return isinstance(leaf, int | float | np.integer | np.floating) and not isinstance(
        leaf, bool | np.bool_)


def value_leaf(x: np.ndarray) -> Any:
    """A result as the user sees it: 0-d floats become Python floats."""
    if x.ndim == 0 and x.dtype.kind == "f":
        return float(x)
    if x.ndim == 0 and x.dtype.kind in "ib":
        return x.item()
    return x


def output_value(program: Program, results: Sequence[np.ndarray]) -> Any:
    """The function's output rebuilt from the native results."""
    leaves = [value_leaf(results[v]) if isinstance(v, ResultIndex) else v
              for v in program.out_leaves]
    return program.out_tree.unflatten(leaves)


def gradients(program: Program, in_leaves: Sequence[Any], grad_args: Sequence[int],
              grads: Sequence[np.ndarray]) -> tuple[Any, ...]:
    """One derivative per argument: the argument's structure, None where there is none."""
    by_arg = dict(zip(grad_args, grads))
    traced = program.traced_leaves
    out: list[Any] = [None] * len(in_leaves)
    for arg, leaf in enumerate(traced):
        g = by_arg.get(arg)
        if g is None or program.in_kinds[leaf] != DIFF:
            continue
        out[leaf] = float(g) if _is_number(in_leaves[leaf]) else g
    return tuple(program.in_tree.unflatten(out))


def param_gradients(program: Program, params: Params, grad_args: Sequence[int],
                    grads: Sequence[np.ndarray]) -> Grads:
    """`Grads` over `params` from per-argument results (None where there is none).

    `grad_args` are the function-argument indices `grads` belong to, as the compiled
    entry point reports them; a parameter the function never read, or whose argument
    has no entry, gets None.
    """
    by_arg = dict(zip(grad_args, grads))
    read = {id(arr): arg for arg, arr in program.param_args()}
    out = IdDict()
    for p in params:
        arg = read.get(id(p))
        out[p] = None if arg is None else by_arg.get(arg)
    return Grads(params, out)
