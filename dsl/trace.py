"""The trace: the function being recorded as array-dialect ops.

A `Trace` owns one block of a `func.func`. Tracers are the block's values; each DSL
operation appends one op. Alongside the IR, the trace keeps a structural key (op
names, operand numbering, properties, types) so the runtime can find compiled code
for an identical program without printing or hashing the IR.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DenseArrayBase,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    UnknownLoc,
)
from xdsl.ir import Attribute, Block, BlockArgument, Operation, Region, SSAValue

from pullback.compiler.dialects import array as ad
from pullback.compiler.dialects.ad import ReverseBeginOp
from pullback.dsl import dtypes, integer_shadow
from pullback.dsl.errors import shape_error
from pullback.dsl.locations import here

if TYPE_CHECKING:
    from pullback.dsl.tracer import Tracer

_ACTIVE: ContextVar[tuple[Trace, ...]] = ContextVar("pullback_active_traces", default=())
"""The traces being recorded in this thread (or task), innermost last. Each thread has
its own: a thread that traces never turns another thread's numpy calls into ops."""


def current_trace() -> Trace | None:
    """The innermost trace this thread is recording, if any."""
    active = _ACTIVE.get()
    return active[-1] if active else None


class Trace:
    """Records array ops into the entry block of a function.

    `params` are arrays to differentiate with respect to (implicit parameters): when
    the function reads one, it becomes a floating-point input like any other closed-over
    array, but flagged in `hidden_diff`.
    """

    def __init__(self, params: Sequence[np.ndarray] = ()) -> None:
        self.block = Block()
        self.key: list[object] = []
        self.hidden: list[np.ndarray] = []
        self.hidden_diff: list[bool] = []
        self._params: dict[int, np.ndarray] = {id(p): p for p in params}
        self._hidden_by_id: dict[int, object] = {}
        self._numbering: dict[SSAValue, int] = {}
        self._insertion: list[Block] = [self.block]
        self._written: dict[BlockArgument, Tracer] = {}
        self._reused: dict[tuple[object, ...], SSAValue] = {}
        self.shadows: dict[SSAValue, SSAValue] = {}
        """Float64 shadow of each int64 value computed from a differentiated integer input
        (see `integer_shadow`)."""

    def is_param(self, value: object) -> bool:
        """Whether `value` is one of this trace's implicit parameters (by identity)."""
        return self._params.get(id(value)) is value

    # -- values -----------------------------------------------------------------------

    def _number(self, value: SSAValue) -> int:
        n = len(self._numbering)
        self._numbering[value] = n
        return n

    def new_input(self, shape: tuple[int, ...], dtype: np.dtype):
        """A tracer for a new function argument."""
        from pullback.dsl.tracer import Tracer

        t = dtypes.tensor_type(shape, dtype)
        arg = self.block.insert_arg(t, len(self.block.args))
        self._number(arg)
        self.key.append(("arg", _text(t)))
        return Tracer(self, arg)

    def hidden_input(self, value: np.ndarray):
        """The tracer for an array the function closes over, read at every call.

        An integer implicit parameter arrives as float64 and is traced as int64 with that
        float64 input as its shadow (`integer_shadow`), like an integer argument.
        """
        known = self._hidden_by_id.get(id(value))
        if known is not None:
            return known
        dtypes.refuse_unsupported(value, "a closed-over array")
        arr = np.asarray(value)
        dt = dtypes.canonical(arr.dtype)
        param = self.is_param(value)
        if param:
            self.key.append(("param",))
        tracer = self.new_input(arr.shape, dtypes.float_of(dt) if param else dt)
        tracer.value.location = here()  # the line that first reads it
        if param and dt.kind == "i":
            self._insertion.append(self.block)  # the conversion dominates every region
            try:
                tracer = integer_shadow.shadowed_input(self, tracer)
            finally:
                self._insertion.pop()
        self.hidden.append(value)
        self.hidden_diff.append(param)
        self._hidden_by_id[id(value)] = tracer
        return tracer

    def emit(self, op: Operation):
        """Append `op`; return the tracer of its single result. The op's location
        becomes the user's line that made it (the key does not include it)."""
        from pullback.dsl.tracer import Tracer

        redirected = integer_shadow.redirect(self, op)
        if redirected is not None:
            return redirected
        if isinstance(op.location, UnknownLoc):  # an inlined op keeps its own
            op.location = here()
        self._insertion[-1].add_op(op)
        props = tuple((k, _text(v)) for k, v in op.properties.items())
        operands = tuple(self._numbering[o] for o in op.operands)
        self.key.append((op.name, operands, props, _text(op.results[0].type)))
        self._number(op.results[0])
        integer_shadow.follow(self, op)
        return Tracer(self, op.results[0])

    def reuse(self, key: tuple[object, ...], build: Callable[[], Operation]):
        """The tracer of a side-effect-free op that `key` determines in full (its name,
        operand values and parameters), emitted once per block: a repeat, such as the
        same slice of the same array or the same constant in every step of a Python
        loop, gets the first one's value. The op is built only the first time, so a
        long unrolled trace is not slowed by ops the compiler would merge anyway."""
        from pullback.dsl.tracer import Tracer

        full_key = (self._insertion[-1], *key)
        value = self._reused.get(full_key)
        if value is not None:
            return Tracer(self, value)
        tracer = self.emit(build())
        self._reused[full_key] = tracer.value
        return tracer

    def full(self, value: float | int | bool, shape: tuple[int, ...], dtype: np.dtype):
        """A constant array (folded Python scalar)."""
        # repr tells 0.0 from -0.0 and 1 from 1.0 from True, which compare equal
        return self.reuse((ad.FullOp.name, type(value), repr(value), tuple(shape), dtype),
                          lambda: ad.FullOp(value, dtypes.tensor_type(shape, dtype)))

    # -- writes -------------------------------------------------------------------------

    def write(self, dst: Tracer, value: Tracer) -> None:
        """Give the array `dst` stands for the value `value`, as a numpy in-place write.

        Later reads of `dst` see `value`. When `dst` is an input of the function (an
        argument or a closed-over array), the caller's array is written when the
        compiled function returns (`array.assign`).
        """
        if value.shape != dst.shape or value.dtype != dst.dtype:
            raise shape_error(
                f"an in-place write into a traced array of shape {dst.shape} and dtype "
                f"{dst.dtype} got a value of shape {value.shape} and dtype {value.dtype}")
        integer_shadow.check_write(self, dst.value)
        arg = dst.value
        if isinstance(arg, BlockArgument) and arg.block is self.block:
            known = self._written.setdefault(arg, dst)
            if known is not dst:
                raise ValueError("this function input is written through two different "
                                 "traced arrays; write it through one")
        if self._insertion[-1] is not self.block and not _inside(dst.value, self._insertion[-1]):
            raise NotImplementedError(
                "an in-place write of a value from outside a region (pb.checkpointed, "
                "pb.forwarddiff, a gradient taken inside the function) is not supported; "
                "return the new value from the region and write it outside")
        dst.value = value.value

    def written_inputs(self) -> list[tuple[BlockArgument, SSAValue]]:
        """Each written function input and the value it holds at the end, in order."""
        return [(arg, t.value) for arg, t in self._written.items() if t.value is not arg]

    # -- regions ------------------------------------------------------------------------

    @contextmanager
    def region(self) -> Iterator[Block]:
        """Record the ops emitted inside the `with` into a fresh detached block.

        The block's ops may use values of the enclosing function (its inputs, earlier
        ops); a caller turns it into a function of its own, transforms it, and brings
        the result back with `inline`. Inputs (`new_input`, `hidden_input`) still go to
        the function's entry block.
        """
        block = Block()
        self._insertion.append(block)
        try:
            yield block
        finally:
            self._insertion.pop()

    def terminate(self, block: Block, op: Operation) -> None:
        """End the region `block` with the terminator `op` (no results)."""
        self.key.append((op.name, tuple(self._numbering[o] for o in op.operands)))
        block.add_op(op)

    def region_input(self, block: Block, shape: tuple[int, ...], dtype: np.dtype):
        """A tracer for a new argument of the region `block`."""
        from pullback.dsl.tracer import Tracer

        t = dtypes.tensor_type(shape, dtype)
        arg = block.insert_arg(t, len(block.args))
        self._number(arg)
        self.key.append(("region_arg", _text(t)))
        return Tracer(self, arg)

    def inline(self, fn: func.FuncOp, args: Sequence[SSAValue]) -> list[SSAValue]:
        """Emit a copy of the single-block function `fn` with its arguments bound to
        `args`; the values it returns (`fn`'s `ad.reverse_begin`, if any, is dropped)."""
        block = fn.body.block
        if len(args) != len(block.args):
            raise ValueError(
                f"inlining @{fn.sym_name.data} needs {len(block.args)} arguments, "
                f"got {len(args)}")
        mapping: dict[SSAValue, SSAValue] = dict(zip(block.args, args, strict=True))
        outputs: Sequence[SSAValue] = ()
        for op in block.ops:
            if isinstance(op, func.ReturnOp):
                outputs = op.arguments
                break
            if isinstance(op, ReverseBeginOp):
                self._mark_reverse_begin()
                continue
            if len(op.results) != 1:
                raise ValueError(f"cannot inline '{op.name}': it must have one result")
            copy = op.clone(mapping) if op.regions else op.clone_without_regions(mapping)
            mapping[op.results[0]] = self.emit(copy).value
        return [mapping.get(v, v) for v in outputs]

    def _mark_reverse_begin(self) -> None:
        """Keep an inlined derivative's `ad.reverse_begin` when it is the function's first
        (a compiled training step: the memory report then tells saved activations from
        scratch); a function has at most one, and regions none."""
        block = self._insertion[-1]
        if block is not self.block or any(isinstance(op, ReverseBeginOp) for op in block.ops):
            return
        self.key.append((ReverseBeginOp.name,))
        block.add_op(ReverseBeginOp())

    # -- result -----------------------------------------------------------------------

    def finish(self, outputs: Sequence[SSAValue], name: str) -> ModuleOp:
        """Close the function with `func.return outputs`; return the module."""
        for arg, value in self.written_inputs():
            self.key.append(("assign", self._numbering[arg], self._numbering[value]))
            self.block.add_op(ad.AssignOp(arg, value))
        self.key.append(("return", tuple(self._numbering[o] for o in outputs)))
        self.block.add_op(func.ReturnOp(*outputs))
        inputs = [a.type for a in self.block.args]
        results = [o.type for o in outputs]
        fn = func.FuncOp(name, (inputs, results), Region(self.block))
        return ModuleOp([fn])

    def structural_key(self) -> tuple[object, ...]:
        return tuple(self.key)


@contextmanager
def tracing(trace: Trace) -> Iterator[Trace]:
    """Make `trace` the active trace for DSL operations in this thread."""
    token = _ACTIVE.set((*_ACTIVE.get(), trace))
    try:
        yield trace
    finally:
        _ACTIVE.reset(token)


def _inside(value: SSAValue, block: Block) -> bool:
    """Whether `value` is defined in `block` (an argument or an op result)."""
    owner = value.owner
    return owner is block if isinstance(owner, Block) else owner.parent is block


def tensor_shape(t: TensorType) -> tuple[int, ...]:
    return tuple(t.get_shape())


_EXACT = (TensorType, DenseArrayBase, IntegerAttr, StringAttr)
"""Attributes whose equality is equality of their text (no float fields, where 0.0
equals -0.0 but prints otherwise): their text can be remembered."""


def _text(attribute: Attribute) -> str:
    """The text of a type or property in the structural key. Printing is the slowest
    part of emitting an op, and a trace repeats a few types many times."""
    return _remembered_text(attribute) if isinstance(attribute, _EXACT) else str(attribute)


@functools.lru_cache(maxsize=4096)
def _remembered_text(attribute: Attribute) -> str:
    return str(attribute)
