"""`forwarddiff`: a region of a reverse-differentiated function done in forward mode.

`forwarddiff(f, x)` records `f` into a region of its own, with `x` as its one input
and every value it closes over turned into a further input. The region becomes a
function `@r(x, captured...)`; the `jvp` pass gives its forward derivative, the `vmap`
pass batches that over `chunk_threshold` tangent directions at a time, and the chunks,
fed rows of the identity, give the Jacobian `J` (shape `(y.size, x.size)`). Back in
the enclosing trace the region's value is

    y_out = y(sg(x), sg(captured)) + reshape((x - sg(x)) @ J^T)

with `sg` = `ad.stop_gradient`: the value is `y` (the second term is zero), and the
reverse pass sees exactly one derivative, `J`, with respect to `x` (`J` itself is
computed from stopped values only). After differentiation the `drop-derivative-terms`
pass drops the zero term from the value. Closed-over values are stopped: they get no
derivative through the region.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr, UnitAttr
from xdsl.ir import Block, Region, SSAValue

from pullback.compiler.autodiff.forward import build_jvp
from pullback.compiler.autodiff.functions import is_float
from pullback.compiler.autodiff.vmap import build_vmap
from pullback.compiler.context import make_context
from pullback.compiler.dialects.ad import FORWARDDIFF_MARK, StopGradientOp
from pullback.compiler.passes import get_pass
from pullback.compiler.transforms.bind_zeros import bind_zeros
from pullback.dsl import core, dtypes, integer_shadow
from pullback.dsl import ops as dsl_ops
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
    block.add_op(func.ReturnOp(returned))
    captured = capture(block)
    fn = func.FuncOp("forwarddiff_region", ([a.type for a in block.args], [returned.type]),
                     Region(block))
    module = ModuleOp([fn])
    start = trace.emit(StopGradientOp(xt.value))
    start.value.owner.attributes[FORWARDDIFF_MARK] = UnitAttr()
    inputs = [start.value, *(_stopped(trace, v) for v in captured)]
    (value,) = trace.inline(fn, inputs)
    out = Tracer(trace, value)
    if not is_float(value) or xt.size == 0 or out.size == 0:
        return out
    jt = _jacobian_transposed(trace, module, fn, inputs, xt, out, int(chunk_threshold))
    d = dsl_ops.reshape(xt - start, (1, xt.size))
    lin = dsl_ops.reshape(dsl_ops.matmul(d, jt), out.shape)
    result = out + dsl_ops.astype(lin, out.dtype)
    result.value.owner.attributes[FORWARDDIFF_MARK] = UnitAttr()
    return result


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


def _stopped(trace: Trace, value: SSAValue) -> SSAValue:
    """A captured value as the region sees it: floats with their derivatives stopped."""
    return trace.emit(StopGradientOp(value)).value if is_float(value) else value


# ----------------------------------------------------------------------------
# The Jacobian, chunk by chunk
# ----------------------------------------------------------------------------


def _jacobian_transposed(trace: Trace, module: ModuleOp, fn: func.FuncOp,
                         inputs: list[SSAValue], x: Tracer, y: Tracer, chunk: int) -> Tracer:
    """`J^T` of shape (x.size, y.size), assembled from forward passes over chunks of
    at most `chunk` tangent directions."""
    n, m = x.size, y.size
    jvp = _tangent_function(module, fn)
    sizes = [min(chunk, n - s) for s in range(0, n, chunk)]
    batched: dict[int, func.FuncOp] = {}
    for size in sorted(set(sizes)):
        vm = build_vmap(module, jvp, (len(inputs),), size, broadcast=True)
        vm.sym_name = StringAttr(f"{jvp.sym_name.data}_vmap{size}")
        batched[size] = vm
    rows = []
    for start, size in zip(range(0, n, chunk), sizes, strict=True):
        seed = _identity_rows(trace, x, start, size)
        _, tangent = trace.inline(batched[size], [*inputs, seed.value])
        rows.append(dsl_ops.reshape(Tracer(trace, tangent), (size, m)))
    return rows[0] if len(rows) == 1 else dsl_ops.concatenate(rows, axis=0)


def _tangent_function(module: ModuleOp, fn: func.FuncOp) -> func.FuncOp:
    """`@r_jvp(x, captured..., tx)`: the forward derivative with respect to `x` only
    (the captured values' tangents bound to zero), cleaned up."""
    jvp = build_jvp(module, fn)
    n = len(fn.body.block.args)
    bind_zeros(jvp, range(n + 1, len(jvp.body.block.args)))
    ctx = make_context()
    for name in ("simplify", "cse", "dce"):
        get_pass(name)().apply(ctx, module)
    return jvp


def _identity_rows(trace: Trace, x: Tracer, start: int, size: int) -> Tracer:
    """Rows `start .. start+size` of the identity of order x.size, as `size` tangents
    shaped like `x`; computed by the program (no constant array)."""
    n, dt = x.size, x.dtype
    cols = dsl_ops.cumsum(trace.full(1.0, (n,), dt))
    rows = dsl_ops.cumsum(trace.full(1.0, (size,), dt)) + float(start)
    eye = dsl_ops.where(dsl_ops.reshape(rows, (size, 1)) == dsl_ops.reshape(cols, (1, n)),
                        trace.full(1.0, (), dt), trace.full(0.0, (), dt))
    return dsl_ops.reshape(eye, (size, *x.shape))
