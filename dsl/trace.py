"""The trace: the function being recorded as array-dialect ops.

A `Trace` owns one block of a `func.func`. Tracers are the block's values; each DSL
operation appends one op. Alongside the IR, the trace keeps a structural key (op
names, operand numbering, properties, types) so the runtime can find compiled code
for an identical program without printing or hashing the IR.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Block, Operation, Region, SSAValue

from pullback.compiler.dialects import array as ad
from pullback.dsl import dtypes

_ACTIVE: list[Trace] = []


def current_trace() -> Trace | None:
    """The innermost trace being recorded, if any."""
    return _ACTIVE[-1] if _ACTIVE else None


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
        self.key.append(("arg", str(t)))
        return Tracer(self, arg)

    def hidden_input(self, value: np.ndarray):
        """The tracer for an array the function closes over, read at every call.

        An implicit parameter is traced as floating point (integers promoted).
        """
        known = self._hidden_by_id.get(id(value))
        if known is not None:
            return known
        arr = np.asarray(value)
        dt = dtypes.canonical(arr.dtype)
        param = self.is_param(value)
        if param:
            dt = dtypes.float_of(dt)
            self.key.append(("param",))
        tracer = self.new_input(arr.shape, dt)
        self.hidden.append(value)
        self.hidden_diff.append(param)
        self._hidden_by_id[id(value)] = tracer
        return tracer

    def emit(self, op: Operation):
        """Append `op`; return the tracer of its single result."""
        from pullback.dsl.tracer import Tracer

        self._insertion[-1].add_op(op)
        props = tuple((k, str(v)) for k, v in op.properties.items())
        operands = tuple(self._numbering[o] for o in op.operands)
        self.key.append((op.name, operands, props, str(op.results[0].type)))
        self._number(op.results[0])
        return Tracer(self, op.results[0])

    def full(self, value: float | int | bool, shape: tuple[int, ...], dtype: np.dtype):
        """A constant array (folded Python scalar)."""
        return self.emit(ad.FullOp(value, dtypes.tensor_type(shape, dtype)))

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

    def region_input(self, block: Block, shape: tuple[int, ...], dtype: np.dtype):
        """A tracer for a new argument of the region `block`."""
        from pullback.dsl.tracer import Tracer

        t = dtypes.tensor_type(shape, dtype)
        arg = block.insert_arg(t, len(block.args))
        self._number(arg)
        self.key.append(("region_arg", str(t)))
        return Tracer(self, arg)

    def inline(self, fn: func.FuncOp, args: Sequence[SSAValue]) -> list[SSAValue]:
        """Emit a copy of the single-block function `fn` with its arguments bound to
        `args`; the values it returns."""
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
            if len(op.results) != 1:
                raise ValueError(f"cannot inline '{op.name}': it must have one result")
            copy = op.clone(mapping) if op.regions else op.clone_without_regions(mapping)
            mapping[op.results[0]] = self.emit(copy).value
        return [mapping.get(v, v) for v in outputs]

    # -- result -----------------------------------------------------------------------

    def finish(self, outputs: Sequence[SSAValue], name: str) -> ModuleOp:
        """Close the function with `func.return outputs`; return the module."""
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
    """Make `trace` the active trace for DSL operations."""
    _ACTIVE.append(trace)
    try:
        yield trace
    finally:
        _ACTIVE.pop()


def tensor_shape(t: TensorType) -> tuple[int, ...]:
    return tuple(t.get_shape())
