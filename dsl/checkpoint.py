"""`checkpointed`: a part of a traced function whose intermediates are recomputed.

`checkpointed(f, *xs)` records `f(*xs)` into an `ad.checkpoint` region. The values
the region reads from the enclosing function (the arrays in `xs`, arrays `f` closes
over) become its operands, so the reverse pass keeps only those and recomputes the
rest when it needs it. Each array `f` returns is one region of its own (a region has
one result); outputs that are not traced arrays come back unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Block, Operation, Region, SSAValue

from pullback.compiler.dialects.ad import CheckpointOp, YieldOp
from pullback.dsl import integer_shadow
from pullback.dsl.regions import capture
from pullback.dsl.trace import Trace, current_trace
from pullback.dsl.tracer import Tracer


def checkpointed(f: Callable[..., Any], *xs: Any) -> Any:
    """`f(*xs)`, with its intermediates recomputed in the backward pass instead of kept.

    Args:
      f: a DSL function; it may close over arrays and traced values.
      *xs: its arguments (arrays, traced or not, numbers, anything `f` accepts).

    Returns:
      `f(*xs)`, with the same value and derivatives. In reverse mode only the values
      the region reads are kept for the backward pass, which recomputes the region.
      `f` is called once, when the function is traced: Python side effects inside it
      happen then, and their effect on derivatives is undefined. Outside a trace this
      is just `f(*xs)`.

    Example:
      >>> pb.gradient(lambda x: pb.sum(pb.checkpointed(pb.tanh, x)), np.zeros(2))
      array([1., 1.])
    """
    if not callable(f):
        raise TypeError(f"checkpointed needs a function first, got a {type(f).__name__}")
    trace = next((x.trace for x in xs if isinstance(x, Tracer)), None) or current_trace()
    if trace is None:
        return f(*xs)
    with trace.region() as block:
        out = f(*xs)
    region = Region(block)
    return _map_outputs(out, lambda y: _checkpoint(trace, region, y))


def _map_outputs(out: Any, fn: Callable[[Tracer], Tracer]) -> Any:
    """`out` with every tracer replaced by `fn(tracer)` (tuples, lists, dicts walked)."""
    if isinstance(out, Tracer):
        return fn(out)
    if isinstance(out, tuple | list):
        return type(out)(_map_outputs(v, fn) for v in out)
    if isinstance(out, dict):
        return {k: _map_outputs(v, fn) for k, v in out.items()}
    return out


def _checkpoint(trace: Trace, region: Region, y: Tracer) -> Tracer:
    """An `ad.checkpoint` computing `y` from a copy of the recorded `region`."""
    if y.trace is not trace:
        raise ValueError("checkpointed: f returned a traced value from another trace")
    shadow = trace.shadows.get(y.value)
    if shadow is not None:  # an integer carrying a derivative: checkpoint its shadow
        return integer_shadow.shadowed_input(trace, _checkpoint(trace, region,
                                                                Tracer(trace, shadow)))
    mapping: dict[SSAValue, SSAValue] = {}
    body = Region()
    region.clone_into(body, value_mapper=mapping)
    block = body.block
    value = mapping.get(y.value, y.value)
    trace.key.append(("checkpoint_yield", _position(block, value)))
    block.add_op(YieldOp(value))
    _prune(block)
    inputs = capture(body.block)
    assert isinstance(y.value.type, TensorType)
    return trace.emit(CheckpointOp(inputs, body, y.value.type))


def _position(block: Block, value: SSAValue) -> tuple[int, int]:
    """Where `value` is defined, structurally: (op index, result index) in `block`, or
    (-1, 0) for a value of the enclosing function."""
    for k, op in enumerate(block.ops):
        if isinstance(value.owner, Operation) and value.owner is op:
            return k, value.index
    return -1, 0


def _prune(block: Block) -> None:
    """Drop the region's side-effect-free ops whose results nobody uses."""
    from xdsl.traits import is_side_effect_free

    for op in reversed(list(block.ops)):
        if op is not block.last_op and not any(r.uses for r in op.results) \
                and is_side_effect_free(op):
            op.detach()
            op.erase()


