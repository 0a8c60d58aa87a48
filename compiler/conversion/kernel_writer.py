"""Builds kernel-level IR: constants, index arithmetic, loops and flat buffer access.

Every buffer at kernel level is a flat, row-major `memref<N x T>`; masks (`i1`) are
stored one byte per element (`i8`), like numpy's `bool`. A kernel writer appends ops
to the innermost open block of one function and hoists constants to its entry.
Loops whose iterations are independent are `scf.parallel` (one op for a whole nest);
a splittable reduction is an `scf.parallel` starting from its combiners' identities
whose body ends in `scf.reduce` with one combiner region per value; any other loop
is a plain `scf.for`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects.builtin import (
    AnyFloat,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    TensorType,
    i1,
    i8,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue

from pullback.compiler.conversion.combiners import combiner_region
from pullback.compiler.dialects.combiners import Combiner

INDEX = IndexType()
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


@dataclass(frozen=True)
class _OpenLoop:
    """A loop being written: its op, the block it sits in, and how many dimensions."""

    op: scf.ForOp | scf.ParallelOp
    outer: Block
    dims: int
    combiners: tuple[Combiner, ...] = ()


class KernelWriter:
    """Appends ops to a function body, tracking the innermost open loop."""

    def __init__(self, function: func.FuncOp):
        self.entry: Block = function.body.block
        self.block: Block = self.entry
        self._constants: dict[tuple[object, Attribute], SSAValue] = {}
        self._loops: list[_OpenLoop] = []

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

    def open_loop(self, upper: int, inits: Sequence[SSAValue] = (), lower: int = 0,
                  ) -> tuple[SSAValue, tuple[SSAValue, ...]]:
        """Open a serial `scf.for` over [lower, upper); returns the induction and carried
        values."""
        body = Block(arg_types=[INDEX, *(v.type for v in inits)])
        loop = scf.ForOp(self.index(lower), self.index(upper), self.index(1), list(inits), body)
        self._enter(_OpenLoop(loop, self.block, 1), body)
        return body.args[0], tuple(body.args[1:])

    def close_loop(self, yields: Sequence[SSAValue] = ()) -> tuple[SSAValue, ...]:
        """Close the innermost `scf.for`, yielding `yields`; returns the loop results."""
        loop = self._leave(scf.YieldOp(*yields))
        assert isinstance(loop.op, scf.ForOp), "close_loop closes an scf.for"
        return tuple(loop.op.results)

    def open_parallel(self, uppers: Sequence[int],
                      reductions: Sequence[tuple[Combiner, Attribute]] = (),
                      ) -> tuple[SSAValue, ...]:
        """Open one `scf.parallel` over [0, upper) per entry of `uppers`; returns the
        induction values. Each (combiner, element type) of `reductions` is a value it
        reduces, starting from the combiner's identity."""
        if not uppers:
            raise ValueError("scf.parallel needs at least one dimension")
        body = Block(arg_types=[INDEX] * len(uppers))
        inits = [self.constant(c.identity(t), t) for c, t in reductions]
        loop = scf.ParallelOp([self.index(0)] * len(uppers), [self.index(u) for u in uppers],
                              [self.index(1)] * len(uppers), [body], inits)
        self._enter(_OpenLoop(loop, self.block, len(uppers), tuple(c for c, _ in reductions)),
                    body)
        return tuple(body.args)

    def close_parallel(self, contributions: Sequence[SSAValue] = ()) -> tuple[SSAValue, ...]:
        """Close the innermost `scf.parallel`: each iteration contributes `contributions`
        (one per reduced value); returns the reduced values."""
        top = self._loops[-1]
        if len(contributions) != len(top.combiners):
            raise ValueError(f"{len(contributions)} contributions for "
                             f"{len(top.combiners)} reduced values")
        regions = [combiner_region(c, v.type) for c, v in zip(top.combiners, contributions)]
        loop = self._leave(scf.ReduceOp(contributions, regions))
        assert isinstance(loop.op, scf.ParallelOp), "close_parallel closes an scf.parallel"
        return tuple(loop.op.res)

    def open_nest(self, shape: Sequence[int], parallel: bool = False) -> tuple[SSAValue, ...]:
        """Loops over every index of `shape` (none for 0-d): one `scf.parallel` when the
        iterations are independent, else one `scf.for` per dimension; returns the
        induction values."""
        if parallel and shape:
            return self.open_parallel(shape)
        return tuple(self.open_loop(d)[0] for d in shape)

    def close_nest(self, depth: int) -> None:
        """Close the loops over the innermost `depth` dimensions."""
        while depth > 0:
            top = self._loops[-1]
            if top.dims > depth:
                raise ValueError(f"closing {depth} dimensions would split a "
                                 f"{top.dims}-dimensional scf.parallel")
            if isinstance(top.op, scf.ParallelOp):
                self.close_parallel()
            else:
                self.close_loop()
            depth -= top.dims

    def _enter(self, loop: _OpenLoop, body: Block) -> None:
        self.block.add_op(loop.op)
        self._loops.append(loop)
        self.block = body

    def _leave(self, terminator: Operation) -> _OpenLoop:
        self.block.add_op(terminator)
        loop = self._loops.pop()
        self.block = loop.outer
        return loop

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
