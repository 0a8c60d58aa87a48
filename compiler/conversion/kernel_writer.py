"""Builds kernel-level IR: constants, index arithmetic, loops and flat buffer access.

Every buffer at kernel level is a flat, row-major `memref<N x T>`; masks (`i1`) are
stored one byte per element (`i8`), like numpy's `bool`. A kernel writer appends ops
to the innermost open block of one function and hoists constants to its entry.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects.builtin import (
    AnyFloat,
    ArrayAttr,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    StringAttr,
    TensorType,
    UnitAttr,
    i1,
    i8,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue

INDEX = IndexType()
PARALLEL = "pullback.parallel"
REDUCTION = "pullback.reduction"
KERNEL_KIND = "pullback.kernel"


def storage_type(element_type: Attribute) -> Attribute:
    """The in-memory element type: masks take one byte per element."""
    return i8 if element_type == i1 else element_type


def size_of(shape: Sequence[int]) -> int:
    """Number of elements of a shape (1 for 0-d)."""
    n = 1
    for d in shape:
        n *= d
    return n


def buffer_type(tensor_type: Attribute) -> MemRefType:
    """The flat buffer type holding a tensor of `tensor_type` (0-d holds one element)."""
    assert isinstance(tensor_type, TensorType)
    shape = tuple(tensor_type.get_shape())
    return MemRefType(storage_type(tensor_type.element_type), [size_of(shape)])


class KernelWriter:
    """Appends ops to a function body, tracking the innermost open loop."""

    def __init__(self, function: func.FuncOp):
        self.entry: Block = function.body.block
        self.block: Block = self.entry
        self._constants: dict[tuple[object, Attribute], SSAValue] = {}
        self._loops: list[tuple[scf.ForOp, Block]] = []

    def add(self, op: Operation) -> SSAValue:
        """Append `op` to the current block and return its first result."""
        self.block.add_op(op)
        return op.results[0] if op.results else None  # type: ignore[return-value]

    def constant(self, value: float | int | bool, type: Attribute) -> SSAValue:
        """A constant of `type`, created once per function at its entry."""
        key = (value, type) if not isinstance(value, float) else (repr(value), type)
        if key in self._constants:
            return self._constants[key]
        if isinstance(type, AnyFloat):
            attr: Attribute = FloatAttr(float(value), type)
        else:
            assert isinstance(type, IntegerType | IndexType)
            attr = IntegerAttr(int(value), type)
        op = arith.ConstantOp(attr, type)
        first = self.entry.first_op
        if first is None:
            self.entry.add_op(op)
        else:
            self.entry.insert_op_before(op, first)
        self._constants[key] = op.result
        return op.result

    def index(self, value: int) -> SSAValue:
        """An `index` constant."""
        return self.constant(value, INDEX)

    # -- index arithmetic ---------------------------------------------------

    def mul_index(self, a: SSAValue, factor: int) -> SSAValue:
        if factor == 1:
            return a
        return self.add(arith.MuliOp(a, self.index(factor)))

    def add_index(self, a: SSAValue | None, b: SSAValue) -> SSAValue:
        return b if a is None else self.add(arith.AddiOp(a, b))

    def affine(self, i: SSAValue, scale: int, offset: int) -> SSAValue:
        """`offset + scale * i` on index values (scale may be negative)."""
        if scale == 1 and offset == 0:
            return i
        term = i if scale == 1 else self.add(arith.MuliOp(i, self.index(scale)))
        return term if offset == 0 else self.add(arith.AddiOp(term, self.index(offset)))

    # -- loops ----------------------------------------------------------------

    def open_loop(self, upper: int, inits: Sequence[SSAValue] = (), lower: int = 0, *,
                  parallel: bool = False, combiners: Sequence[str] = (),
                  ) -> tuple[SSAValue, tuple[SSAValue, ...]]:
        """Open `scf.for` over [lower, upper); returns the induction and carried values.

        `parallel` marks a loop whose iterations are independent; `combiners` names
        the reduction combiner ("add", "mul", "max", "min") of each carried value.
        """
        if combiners and len(combiners) != len(inits):
            raise ValueError(f"{len(combiners)} combiners for {len(inits)} carried values")
        body = Block(arg_types=[INDEX, *(v.type for v in inits)])
        loop = scf.ForOp(self.index(lower), self.index(upper), self.index(1), list(inits), body)
        if parallel and not inits:
            loop.attributes[PARALLEL] = UnitAttr()
        if combiners:
            loop.attributes[REDUCTION] = ArrayAttr([StringAttr(c) for c in combiners])
        self.block.add_op(loop)
        self._loops.append((loop, self.block))
        self.block = body
        return body.args[0], tuple(body.args[1:])

    def close_loop(self, yields: Sequence[SSAValue] = ()) -> tuple[SSAValue, ...]:
        """Close the innermost loop, yielding `yields`; returns the loop results."""
        self.block.add_op(scf.YieldOp(*yields))
        loop, outer = self._loops.pop()
        self.block = outer
        return tuple(loop.results)

    def open_nest(self, shape: Sequence[int], parallel: bool = False) -> tuple[SSAValue, ...]:
        """Open one loop per dimension (none for 0-d); returns the induction values."""
        return tuple(self.open_loop(d, parallel=parallel)[0] for d in shape)

    def close_nest(self, depth: int) -> None:
        for _ in range(depth):
            self.close_loop()

    # -- memory -------------------------------------------------------------

    def load(self, buffer: SSAValue, offset: SSAValue, element_type: Attribute) -> SSAValue:
        """Load element `offset` of a flat buffer, as a value of `element_type`."""
        value = self.add(memref.LoadOp.get(buffer, [offset]))
        if element_type == i1:
            value = self.add(arith.TruncIOp(value, i1))
        return value

    def store(self, value: SSAValue, buffer: SSAValue, offset: SSAValue) -> None:
        """Store `value` at element `offset` of a flat buffer."""
        if value.type == i1:
            value = self.add(arith.ExtUIOp(value, i8))
        self.add(memref.StoreOp.get(value, buffer, [offset]))
