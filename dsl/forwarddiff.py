"""`forwarddiff`: a region of a reverse-differentiated function done in forward mode.

`forwarddiff(f, x)` records `f` into an `ad.forward` region with `x` as its first
operand and every value it closes over turned into a further operand, and
`chunk_threshold` as its `chunk`. The compiler's `expand-forward` pass
(`pullback.compiler.autodiff.forward_region`) turns the region into its value plus a
zero term whose derivative with respect to `x` is the Jacobian, computed in forward
mode `chunk` tangent directions at a time; closed-over values get no derivative
through the region. In value mode the region is just its value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Block, Region

from pullback.compiler.dialects.ad import ForwardOp, YieldOp
from pullback.dsl import core, dtypes, integer_shadow
from pullback.dsl.regions import capture
from pullback.dsl.trace import Trace, current_trace
from pullback.dsl.tracer import Tracer

DEFAULT_CHUNK_THRESHOLD = 32
"""Tangent directions per forward pass when `chunk_threshold` is not given."""


def forwarddiff(f: Callable[[Any], Any], x: Any,
                chunk_threshold: int = DEFAULT_CHUNK_THRESHOLD) -> Any:
    """`f(x)`, differentiated in forward mode inside a reverse-differentiated function.

    Args:
      f: a function of one array or number, returning one array or number.
      x: the region's input: an array (traced or numpy) or a number. An integer array
        stays an integer array inside `f`, with a float64 derivative as for a top-level
        argument; Python integers are promoted to float64. To differentiate with respect
        to several values, combine them into one array (`pb.stack`, `pb.concatenate`).
      chunk_threshold: at most this many tangent directions per forward pass; the
        Jacobian is assembled from `ceil(x.size / chunk_threshold)` passes.

    Returns:
      `f(x)`. Its derivative with respect to `x` is the Jacobian computed in forward
      mode; values `f` closes over get no derivative through the region (pass them in
      `x` instead). Outside differentiation this is just `f(x)`.

    Example:
      >>> pb.gradient(lambda a, b: pb.forwarddiff(lambda v: v[0] * v[1], pb.stack([a, b])), 2, 3)
      (3.0, 2.0)
    """
    _check_chunk_threshold(chunk_threshold)
    trace = x.trace if isinstance(x, Tracer) else current_trace()
    if trace is None:
        return f(x)
    xt = _region_input(trace, x)
    with trace.region() as block:
        inner = trace.region_input(block, xt.shape, xt.dtype)
        integer = isinstance(x, Tracer | np.ndarray) and x.dtype.kind in "iu"
        y = f(integer_shadow.shadowed_input(trace, inner) if integer else inner)
    if not isinstance(y, Tracer):
        if isinstance(y, list | tuple | dict):
            raise TypeError(_one_output(y))
        return y
    if y.trace is not trace:
        raise ValueError("forwarddiff: f returned a traced value from another trace")
    _check_region(block)
    returned = integer_shadow.result(trace, y.value)
    trace.terminate(block, YieldOp(returned))
    captured = capture(block)
    assert isinstance(returned.type, TensorType)
    return trace.emit(ForwardOp(xt.value, captured, Region(block), returned.type,
                                int(chunk_threshold)))


# ----------------------------------------------------------------------------
# The region
# ----------------------------------------------------------------------------


def _check_chunk_threshold(chunk: Any) -> None:
    if isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1:
        raise ValueError(
            f"forwarddiff needs chunk_threshold to be a positive integer, got {chunk!r}")


def _one_output(y: Any) -> str:
    return (f"forwarddiff needs f to return one array or number, got a {type(y).__name__}; "
            "combine several outputs with pb.stack or pb.concatenate")


def _region_input(trace: Trace, x: Any) -> Tracer:
    """`x` as a floating point tracer of `trace`."""
    if isinstance(x, np.ndarray) and trace.is_param(x):
        t = trace.hidden_input(x)
    elif isinstance(x, Tracer | np.ndarray) or core.is_scalar(x):
        t = core.lift(trace, x, None if isinstance(x, Tracer | np.ndarray) else np.float64)
    else:
        raise TypeError(
            f"forwarddiff takes x as one array or number, got a {type(x).__name__}; "
            "combine several values into one array with pb.stack or pb.concatenate")
    if t.dtype == np.bool_:
        raise TypeError("forwarddiff needs a numeric x, got a boolean array")
    return t if t.dtype.kind == "f" else core.astype(t, dtypes.float_of(t.dtype))


def _check_region(block: Block) -> None:
    for op in block.ops:
        if op.name.startswith("ad.callback"):
            raise NotImplementedError(
                "showgrad/hook inside forwarddiff is not supported: forward mode computes "
                "no gradient to show or replace inside the region; move the call outside "
                f"pb.forwarddiff (found '{op.name}')")
