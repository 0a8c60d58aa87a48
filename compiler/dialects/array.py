"""The `array` dialect: whole-array operations with numpy semantics.

Every op works on ranked, statically shaped builtin tensors. Elementwise ops take
operands of one identical type: broadcasting and dtype promotion are explicit
(`array.broadcast`, `array.convert`), inserted by the tracer, so that every rule
and lowering sees equal shapes. Element types are f64, f32, i64 and i1 (masks).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects import arith, func, math
from xdsl.dialects.builtin import (
    I64,
    AnyFloat,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    TensorType,
    UnitAttr,
    i1,
    i64,
)
from xdsl.ir import Attribute, BlockArgument, Dialect, Operation, SSAValue
from xdsl.irdl import (
    AttrSizedSegments,
    IRDLOperation,
    ParsePropInAttrDict,
    VarConstraint,
    base,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.irdl.operations import VariadicDef
from xdsl.traits import Commutative, MemoryWriteEffect, Pure
from xdsl.utils.exceptions import VerifyException

from pullback.compiler.dialects.combiners import ADD, MAX, MIN, MUL
from pullback.compiler.dialects.traits import (
    ArrayCanonicalization,
    Elementwise,
    Expensive,
    FloatOnly,
    IndexMap,
    ReductionWithCombiner,
)

AnyTensor = base(TensorType)


@functools.lru_cache(maxsize=4096)
def _tensor(element_type: Attribute, shape: tuple[int, ...]) -> TensorType:
    return TensorType(element_type, shape)


def tensor_of(element_type: Attribute, shape: Sequence[int]) -> TensorType:
    """`tensor<shape x element_type>`. Types are immutable, and a trace builds the same
    few many times: each is built (and verified) once."""
    return _tensor(element_type, tuple(int(n) for n in shape))


_FIXED: set[type[IRDLOperation]] = set()
"""Op classes checked to have no variadic or optional operands, results, regions or
successors and no segment sizes: `build_fixed` may build them."""


def build_fixed(op: IRDLOperation, *, operands: Sequence[SSAValue | Operation] = (),
                result_types: Sequence[Attribute] = (),
                properties: dict[str, Attribute] | None = None) -> None:
    """Initialise `op` of a fixed-arity class the way the generic IRDL builder would,
    straight through `Operation.__init__`: a third of the builder's cost, and tracing
    builds one op per array operation of the user's program."""
    cls = type(op)
    if cls not in _FIXED:
        op_def = cls.get_irdl_definition()
        variadic = [name for name, d in (*op_def.operands, *op_def.results,
                                         *op_def.regions, *op_def.successors)
                    if isinstance(d, VariadicDef)]
        if variadic or any(isinstance(o, AttrSizedSegments) for o in op_def.options):
            raise TypeError(f"'{op_def.name}' has variadic or optional parts "
                            f"({', '.join(variadic) or 'segment sizes'}): build it "
                            "with the generic IRDL builder")
        _FIXED.add(cls)
    Operation.__init__(op, operands=[SSAValue.get(o) for o in operands],
                       result_types=result_types, properties=properties or {})


def shape_of(value: SSAValue | Attribute) -> tuple[int, ...]:
    """The static shape of a tensor value or type."""
    t = value.type if isinstance(value, SSAValue) else value
    assert isinstance(t, TensorType)
    return tuple(t.get_shape())


def element_type_of(value: SSAValue | Attribute) -> Attribute:
    """The element type of a tensor value or type."""
    t = value.type if isinstance(value, SSAValue) else value
    assert isinstance(t, TensorType)
    return t.element_type


def i64_array(values: Sequence[int]) -> DenseArrayBase:
    """A `array<i64: ...>` attribute (immutable: each distinct one is built once)."""
    return _i64_array(tuple(int(v) for v in values))


@functools.lru_cache(maxsize=4096)
def _i64_array(values: tuple[int, ...]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


def _ints(attr: DenseArrayBase) -> tuple[int, ...]:
    return tuple(int(v) for v in attr.get_values())


# ----------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------


@irdl_op_definition
class ConstantOp(IRDLOperation):
    """A small literal array (scalars use `array.full`)."""

    name = "array.constant"
    value = prop_def(DenseIntOrFPElementsAttr)
    result = result_def(AnyTensor)
    traits = traits_def(Pure())
    assembly_format = "$value attr-dict `:` type($result)"

    def __init__(self, value: DenseIntOrFPElementsAttr):
        build_fixed(self, properties={"value": value}, result_types=[value.type])


@irdl_op_definition
class FullOp(IRDLOperation):
    """An array of the result type with every element equal to `value`."""

    name = "array.full"
    value = prop_def(FloatAttr | IntegerAttr)
    result = result_def(AnyTensor)
    traits = traits_def(Pure())
    assembly_format = "$value attr-dict `:` type($result)"

    def __init__(self, value: float | int | bool, type: TensorType):
        el = type.element_type
        if isinstance(el, AnyFloat):
            attr: Attribute = FloatAttr(float(value), el)
        else:
            assert isinstance(el, IntegerType)
            attr = IntegerAttr(int(value), el)
        build_fixed(self, properties={"value": attr}, result_types=[type])

    @property
    def scalar(self) -> float | int:
        v = self.value
        return v.value.data

    def verify_(self) -> None:
        if self.value.type != element_type_of(self.result):
            raise VerifyException(
                f"array.full value type {self.value.type} does not match result "
                f"element type {element_type_of(self.result)}"
            )


ZERO_MARK = "pullback.zero"
"""Unit attribute on the `array.full` zeros that stand for a structurally zero derivative
(made by the AD passes; `simplify` lets them absorb products and linear ops)."""


def is_marked_zero(value: SSAValue) -> bool:
    """Whether `value` is a structural zero made by the AD passes."""
    op = value.owner
    return isinstance(op, FullOp) and ZERO_MARK in op.attributes


# ----------------------------------------------------------------------------
# Elementwise ops: one identical tensor type for operands and result
# ----------------------------------------------------------------------------


class UnaryOp(IRDLOperation, abc.ABC):
    """Base of elementwise unary ops. Each op states its own `Elementwise` trait, naming its
    scalar op (xDSL adds the base's traits to an op's own)."""

    T: ClassVar = VarConstraint("T", AnyTensor)
    operand = operand_def(T)
    result = result_def(T)
    traits = traits_def(Pure())
    assembly_format = "$operand attr-dict `:` type($result)"

    def __init__(self, operand: SSAValue | Operation):
        operand = SSAValue.get(operand)
        build_fixed(self, operands=[operand], result_types=[operand.type])


class BinaryOp(IRDLOperation, abc.ABC):
    """Base of elementwise binary ops. Each op states its own `Elementwise` trait, naming its
    scalar op (xDSL adds the base's traits to an op's own)."""

    T: ClassVar = VarConstraint("T", AnyTensor)
    lhs = operand_def(T)
    rhs = operand_def(T)
    result = result_def(T)
    traits = traits_def(Pure())
    assembly_format = "$lhs `,` $rhs attr-dict `:` type($result)"

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation):
        lhs = SSAValue.get(lhs)
        build_fixed(self, operands=[lhs, rhs], result_types=[lhs.type])


@irdl_op_definition
class NegOp(UnaryOp):
    name = "array.neg"
    traits = traits_def(Pure(), Elementwise(), ArrayCanonicalization())


@irdl_op_definition
class AbsOp(UnaryOp):
    name = "array.abs"
    traits = traits_def(Pure(), Elementwise())


@irdl_op_definition
class SignOp(UnaryOp):
    name = "array.sign"
    traits = traits_def(Pure(), Elementwise())


@irdl_op_definition
class ExpOp(UnaryOp):
    name = "array.exp"
    traits = traits_def(Pure(), Elementwise(math.ExpOp), FloatOnly(), Expensive())


@irdl_op_definition
class LogOp(UnaryOp):
    name = "array.log"
    traits = traits_def(Pure(), Elementwise(math.LogOp), FloatOnly(), Expensive())


@irdl_op_definition
class Log1pOp(UnaryOp):
    name = "array.log1p"
    traits = traits_def(Pure(), Elementwise(math.Log1pOp), FloatOnly(), Expensive())


@irdl_op_definition
class Expm1Op(UnaryOp):
    name = "array.expm1"
    traits = traits_def(Pure(), Elementwise(math.ExpM1Op), FloatOnly(), Expensive())


@irdl_op_definition
class SqrtOp(UnaryOp):
    name = "array.sqrt"
    traits = traits_def(Pure(), Elementwise(math.SqrtOp), FloatOnly(), Expensive())


@irdl_op_definition
class SinOp(UnaryOp):
    name = "array.sin"
    traits = traits_def(Pure(), Elementwise(math.SinOp), FloatOnly(), Expensive())


@irdl_op_definition
class CosOp(UnaryOp):
    name = "array.cos"
    traits = traits_def(Pure(), Elementwise(math.CosOp), FloatOnly(), Expensive())


@irdl_op_definition
class TanOp(UnaryOp):
    name = "array.tan"
    traits = traits_def(Pure(), Elementwise(math.TanOp), FloatOnly(), Expensive())


@irdl_op_definition
class TanhOp(UnaryOp):
    name = "array.tanh"
    traits = traits_def(Pure(), Elementwise(math.TanhOp), FloatOnly(), Expensive())


@irdl_op_definition
class SinhOp(UnaryOp):
    name = "array.sinh"
    traits = traits_def(Pure(), Elementwise(math.SinhOp), FloatOnly(), Expensive())


@irdl_op_definition
class CoshOp(UnaryOp):
    name = "array.cosh"
    traits = traits_def(Pure(), Elementwise(math.CoshOp), FloatOnly(), Expensive())


@irdl_op_definition
class ArcsinOp(UnaryOp):
    name = "array.arcsin"
    traits = traits_def(Pure(), Elementwise(math.AsinOp), FloatOnly(), Expensive())


@irdl_op_definition
class ArccosOp(UnaryOp):
    name = "array.arccos"
    traits = traits_def(Pure(), Elementwise(math.AcosOp), FloatOnly(), Expensive())


@irdl_op_definition
class ArctanOp(UnaryOp):
    name = "array.arctan"
    traits = traits_def(Pure(), Elementwise(math.AtanOp), FloatOnly(), Expensive())


@irdl_op_definition
class AddOp(BinaryOp):
    name = "array.add"
    traits = traits_def(Pure(), Commutative(), Elementwise(arith.AddfOp, arith.AddiOp),
                        ArrayCanonicalization())


@irdl_op_definition
class SubOp(BinaryOp):
    name = "array.sub"
    traits = traits_def(Pure(), Elementwise(arith.SubfOp, arith.SubiOp), ArrayCanonicalization())


@irdl_op_definition
class MulOp(BinaryOp):
    name = "array.mul"
    traits = traits_def(Pure(), Commutative(), Elementwise(arith.MulfOp, arith.MuliOp),
                        ArrayCanonicalization())


@irdl_op_definition
class DivOp(BinaryOp):
    name = "array.div"
    traits = traits_def(Pure(), Elementwise(arith.DivfOp), FloatOnly(), Expensive(),
                        ArrayCanonicalization())


@irdl_op_definition
class PowOp(BinaryOp):
    name = "array.pow"
    traits = traits_def(Pure(), Elementwise(math.PowFOp), FloatOnly(), Expensive())


@irdl_op_definition
class MaximumOp(BinaryOp):
    name = "array.maximum"
    traits = traits_def(Pure(), Commutative(), Elementwise(arith.MaximumfOp, arith.MaxSIOp))


@irdl_op_definition
class MinimumOp(BinaryOp):
    name = "array.minimum"
    traits = traits_def(Pure(), Commutative(), Elementwise(arith.MinimumfOp, arith.MinSIOp))


@irdl_op_definition
class Arctan2Op(BinaryOp):
    name = "array.arctan2"
    traits = traits_def(Pure(), Elementwise(math.Atan2Op), FloatOnly(), Expensive())


COMPARE_PREDICATES = ("lt", "le", "gt", "ge", "eq", "ne")


@irdl_op_definition
class CompareOp(IRDLOperation):
    """Elementwise comparison; the result is an i1 mask of the operands' shape."""

    name = "array.compare"
    T: ClassVar = VarConstraint("T", AnyTensor)
    predicate = prop_def(StringAttr)
    lhs = operand_def(T)
    rhs = operand_def(T)
    result = result_def(AnyTensor)
    traits = traits_def(Pure(), Elementwise())
    assembly_format = (
        "$predicate `,` $lhs `,` $rhs attr-dict `:` type($lhs) `->` type($result)"
    )

    def __init__(self, predicate: str, lhs: SSAValue | Operation, rhs: SSAValue | Operation):
        lhs = SSAValue.get(lhs)
        build_fixed(self,
            operands=[lhs, rhs],
            properties={"predicate": StringAttr(predicate)},
            result_types=[tensor_of(i1, shape_of(lhs))],
        )

    def verify_(self) -> None:
        if self.predicate.data not in COMPARE_PREDICATES:
            raise VerifyException(
                f"array.compare predicate '{self.predicate.data}' is not one of "
                f"{', '.join(COMPARE_PREDICATES)}"
            )
        if self.result.type != TensorType(i1, shape_of(self.lhs)):
            raise VerifyException(
                f"array.compare result must be {TensorType(i1, shape_of(self.lhs))}, "
                f"got {self.result.type}"
            )


@irdl_op_definition
class SelectOp(IRDLOperation):
    """`where(cond, on_true, on_false)` elementwise, all of one shape."""

    name = "array.select"
    T: ClassVar = VarConstraint("T", AnyTensor)
    cond = operand_def(AnyTensor)
    on_true = operand_def(T)
    on_false = operand_def(T)
    result = result_def(T)
    traits = traits_def(Pure(), Elementwise(), ArrayCanonicalization())
    assembly_format = (
        "$cond `,` $on_true `,` $on_false attr-dict `:` type($cond) `,` type($result)"
    )

    def __init__(self, cond: SSAValue | Operation, on_true: SSAValue | Operation,
                 on_false: SSAValue | Operation):
        on_true = SSAValue.get(on_true)
        build_fixed(self, operands=[cond, on_true, on_false], result_types=[on_true.type])

    def verify_(self) -> None:
        want = TensorType(i1, shape_of(self.result))
        if self.cond.type != want:
            raise VerifyException(
                f"array.select condition must be {want}, got {self.cond.type}"
            )


@irdl_op_definition
class ConvertOp(IRDLOperation):
    """Elementwise element-type conversion (numpy `astype`)."""

    name = "array.convert"
    operand = operand_def(AnyTensor)
    result = result_def(AnyTensor)
    traits = traits_def(Pure(), Elementwise(), ArrayCanonicalization())
    assembly_format = "$operand attr-dict `:` type($operand) `->` type($result)"

    def __init__(self, operand: SSAValue | Operation, element_type: Attribute):
        operand = SSAValue.get(operand)
        build_fixed(self,
            operands=[operand], result_types=[tensor_of(element_type, shape_of(operand))]
        )

    def verify_(self) -> None:
        if shape_of(self.operand) != shape_of(self.result):
            raise VerifyException(
                f"array.convert keeps the shape: {self.operand.type} -> {self.result.type}"
            )


# ----------------------------------------------------------------------------
# Shape ops
# ----------------------------------------------------------------------------


def broadcast_shapes(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    """numpy's broadcast of two shapes, or None if they do not broadcast."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and x != 1 and y != 1:
            return None
        out.append(y if x == 1 else x)
    return tuple(reversed(out))


class _TypedUnaryShapeOp(IRDLOperation, abc.ABC):
    operand = operand_def(AnyTensor)
    result = result_def(AnyTensor)
    traits = traits_def(Pure())

    def _check_element_type(self) -> None:
        if element_type_of(self.operand) != element_type_of(self.result):
            raise VerifyException(
                f"'{self.name}' keeps the element type: "
                f"{self.operand.type} -> {self.result.type}"
            )


@irdl_op_definition
class BroadcastOp(_TypedUnaryShapeOp):
    """numpy `broadcast_to`: leading dimensions added, size-1 dimensions stretched."""

    name = "array.broadcast"
    traits = traits_def(Pure(), IndexMap(), ArrayCanonicalization())
    assembly_format = "$operand attr-dict `:` type($operand) `->` type($result)"

    def __init__(self, operand: SSAValue | Operation, shape: Sequence[int]):
        operand = SSAValue.get(operand)
        build_fixed(self,
            operands=[operand],
            result_types=[tensor_of(element_type_of(operand), list(shape))],
        )

    def verify_(self) -> None:
        self._check_element_type()
        src, dst = shape_of(self.operand), shape_of(self.result)
        if len(src) > len(dst) or broadcast_shapes(src, dst) != dst:
            raise VerifyException(f"array.broadcast cannot broadcast {src} to {dst}")


@irdl_op_definition
class ReshapeOp(_TypedUnaryShapeOp):
    """Row-major reshape to a shape with the same number of elements."""

    name = "array.reshape"
    traits = traits_def(Pure(), IndexMap(), ArrayCanonicalization())
    assembly_format = "$operand attr-dict `:` type($operand) `->` type($result)"

    def __init__(self, operand: SSAValue | Operation, shape: Sequence[int]):
        operand = SSAValue.get(operand)
        build_fixed(self,
            operands=[operand],
            result_types=[tensor_of(element_type_of(operand), list(shape))],
        )

    def verify_(self) -> None:
        self._check_element_type()
        a, b = shape_of(self.operand), shape_of(self.result)
        if _size(a) != _size(b):
            raise VerifyException(f"array.reshape cannot reshape {a} to {b}")


@irdl_op_definition
class TransposeOp(_TypedUnaryShapeOp):
    """Permutes dimensions: result.shape[i] = operand.shape[permutation[i]]."""

    name = "array.transpose"
    traits = traits_def(Pure(), IndexMap(), ArrayCanonicalization())
    irdl_options = (ParsePropInAttrDict(),)
    permutation = prop_def(DenseArrayBase)
    assembly_format = (
        "$operand attr-dict `:` type($operand) "
        "`->` type($result)"
    )

    def __init__(self, operand: SSAValue | Operation, permutation: Sequence[int]):
        operand = SSAValue.get(operand)
        shape = shape_of(operand)
        build_fixed(self,
            operands=[operand],
            properties={"permutation": i64_array(permutation)},
            result_types=[
                tensor_of(element_type_of(operand), [shape[p] for p in permutation])
            ],
        )

    @property
    def perm(self) -> tuple[int, ...]:
        return _ints(self.permutation)

    def verify_(self) -> None:
        self._check_element_type()
        src, dst, perm = shape_of(self.operand), shape_of(self.result), self.perm
        if sorted(perm) != list(range(len(src))):
            raise VerifyException(
                f"array.transpose permutation {list(perm)} is not a permutation of "
                f"rank {len(src)}"
            )
        if tuple(src[p] for p in perm) != dst:
            raise VerifyException(
                f"array.transpose of {src} by {list(perm)} cannot give {dst}"
            )


# ----------------------------------------------------------------------------
# Reductions and scans
# ----------------------------------------------------------------------------


class ReduceOp(IRDLOperation, abc.ABC):
    """Base of reductions over a sorted set of axes (removed from the shape)."""

    operand = operand_def(AnyTensor)
    result = result_def(AnyTensor)
    axes = prop_def(DenseArrayBase)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = (
        "$operand attr-dict `:` type($operand) `->` type($result)"
    )

    def __init__(self, operand: SSAValue | Operation, axes: Sequence[int]):
        operand = SSAValue.get(operand)
        shape = shape_of(operand)
        axes = sorted(axes)
        out = [d for i, d in enumerate(shape) if i not in axes]
        build_fixed(self,
            operands=[operand],
            properties={"axes": i64_array(axes)},
            result_types=[tensor_of(element_type_of(operand), out)],
        )

    @property
    def axis_list(self) -> tuple[int, ...]:
        return _ints(self.axes)

    def verify_(self) -> None:
        src, axes = shape_of(self.operand), self.axis_list
        if list(axes) != sorted(set(axes)) or any(a < 0 or a >= len(src) for a in axes):
            raise VerifyException(
                f"'{self.name}' axes {list(axes)} must be sorted, unique and within "
                f"rank {len(src)}"
            )
        want = tuple(d for i, d in enumerate(src) if i not in axes)
        if shape_of(self.result) != want or element_type_of(
            self.result
        ) != element_type_of(self.operand):
            raise VerifyException(
                f"'{self.name}' of {self.operand.type} over axes {list(axes)} gives "
                f"shape {want}, not {self.result.type}"
            )


@irdl_op_definition
class ReduceSumOp(ReduceOp):
    name = "array.reduce_sum"
    traits = traits_def(Pure(), ReductionWithCombiner(ADD), ArrayCanonicalization())


@irdl_op_definition
class ReduceProdOp(ReduceOp):
    name = "array.reduce_prod"
    traits = traits_def(Pure(), ReductionWithCombiner(MUL))


@irdl_op_definition
class ReduceMaxOp(ReduceOp):
    name = "array.reduce_max"
    traits = traits_def(Pure(), ReductionWithCombiner(MAX))


@irdl_op_definition
class ReduceMinOp(ReduceOp):
    name = "array.reduce_min"
    traits = traits_def(Pure(), ReductionWithCombiner(MIN))


@irdl_op_definition
class CumsumOp(IRDLOperation):
    """Inclusive running sum along `axis`; with `reverse`, from the end."""

    name = "array.cumsum"
    T: ClassVar = VarConstraint("T", AnyTensor)
    operand = operand_def(T)
    result = result_def(T)
    axis = prop_def(IntegerAttr[I64])
    reverse = opt_prop_def(UnitAttr)
    traits = traits_def(Pure(), ReductionWithCombiner(ADD), ArrayCanonicalization())
    assembly_format = (
        "$operand `axis` `=` $axis (`reverse` $reverse^)? attr-dict `:` type($result)"
    )

    def __init__(self, operand: SSAValue | Operation, axis: int, reverse: bool = False):
        operand = SSAValue.get(operand)
        props: dict[str, Attribute] = {"axis": IntegerAttr(axis, i64)}
        if reverse:
            props["reverse"] = UnitAttr()
        super().__init__(operands=[operand], properties=props, result_types=[operand.type])

    def verify_(self) -> None:
        rank = len(shape_of(self.operand))
        if not 0 <= self.axis.value.data < max(rank, 1):
            raise VerifyException(f"array.cumsum axis {self.axis.value.data} out of rank {rank}")


# ----------------------------------------------------------------------------
# Linear algebra
# ----------------------------------------------------------------------------


@irdl_op_definition
class MatmulOp(IRDLOperation):
    """Batched matrix product: (..., M, K) x (..., K, N) -> (..., M, N), equal batches."""

    name = "array.matmul"
    lhs = operand_def(AnyTensor)
    rhs = operand_def(AnyTensor)
    result = result_def(AnyTensor)
    traits = traits_def(Pure(), ArrayCanonicalization())
    assembly_format = (
        "$lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs) `->` type($result)"
    )

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation):
        lhs, rhs = SSAValue.get(lhs), SSAValue.get(rhs)
        a, b = shape_of(lhs), shape_of(rhs)
        build_fixed(self,
            operands=[lhs, rhs],
            result_types=[tensor_of(element_type_of(lhs), [*a[:-1], b[-1]])],
        )

    def verify_(self) -> None:
        a, b, c = shape_of(self.lhs), shape_of(self.rhs), shape_of(self.result)
        ok = (
            len(a) >= 2 and len(a) == len(b) and a[:-2] == b[:-2] and a[-1] == b[-2]
            and c == (*a[:-1], b[-1])
        )
        if not ok:
            raise VerifyException(
                f"array.matmul needs (..., M, K) x (..., K, N) with equal batch "
                f"dimensions, got {a} x {b} -> {c}"
            )
        if not (element_type_of(self.lhs) == element_type_of(self.rhs)
                == element_type_of(self.result)):
            raise VerifyException("array.matmul operands and result need one element type")


# ----------------------------------------------------------------------------
# Indexing
# ----------------------------------------------------------------------------


def slice_indices_ok(src: Sequence[int], start: Sequence[int], stride: Sequence[int],
                     out: Sequence[int]) -> bool:
    """Whether start + i * stride stays inside `src` for every i < out."""
    if not (len(src) == len(start) == len(stride) == len(out)):
        return False
    for n, s, st, m in zip(src, start, stride, out):
        if st == 0 or m < 0:
            return False
        if m and not (0 <= s < n and 0 <= s + (m - 1) * st < n):
            return False
    return True


@irdl_op_definition
class SliceOp(_TypedUnaryShapeOp):
    """result[i...] = operand[start + i * stride ...]; strides may be negative."""

    name = "array.slice"
    traits = traits_def(Pure(), IndexMap(), ArrayCanonicalization())
    irdl_options = (ParsePropInAttrDict(),)
    start = prop_def(DenseArrayBase)
    stride = prop_def(DenseArrayBase)
    assembly_format = (
        "$operand attr-dict `:` type($operand) "
        "`->` type($result)"
    )

    def __init__(self, operand: SSAValue | Operation, start: Sequence[int],
                 stride: Sequence[int], shape: Sequence[int]):
        operand = SSAValue.get(operand)
        build_fixed(self,
            operands=[operand],
            properties={"start": i64_array(start), "stride": i64_array(stride)},
            result_types=[tensor_of(element_type_of(operand), list(shape))],
        )

    @property
    def starts(self) -> tuple[int, ...]:
        return _ints(self.start)

    @property
    def strides(self) -> tuple[int, ...]:
        return _ints(self.stride)

    def verify_(self) -> None:
        self._check_element_type()
        if not slice_indices_ok(shape_of(self.operand), self.starts, self.strides,
                                shape_of(self.result)):
            raise VerifyException(
                f"array.slice start {list(self.starts)} stride {list(self.strides)} "
                f"does not fit {shape_of(self.operand)} -> {shape_of(self.result)}"
            )


@irdl_op_definition
class UpdateSliceOp(IRDLOperation):
    """`base` with the strided window of `array.slice` replaced by `value`."""

    name = "array.update_slice"
    irdl_options = (ParsePropInAttrDict(),)
    T: ClassVar = VarConstraint("T", AnyTensor)
    base_ = operand_def(T)
    value = operand_def(AnyTensor)
    result = result_def(T)
    start = prop_def(DenseArrayBase)
    stride = prop_def(DenseArrayBase)
    traits = traits_def(Pure(), ArrayCanonicalization())
    assembly_format = (
        "$base_ `,` $value attr-dict `:` "
        "type($base_) `,` type($value)"
    )

    def __init__(self, base_: SSAValue | Operation, value: SSAValue | Operation,
                 start: Sequence[int], stride: Sequence[int]):
        base_ = SSAValue.get(base_)
        build_fixed(self,
            operands=[base_, value],
            properties={"start": i64_array(start), "stride": i64_array(stride)},
            result_types=[base_.type],
        )

    @property
    def starts(self) -> tuple[int, ...]:
        return _ints(self.start)

    @property
    def strides(self) -> tuple[int, ...]:
        return _ints(self.stride)

    def verify_(self) -> None:
        if element_type_of(self.base_) != element_type_of(self.value):
            raise VerifyException("array.update_slice base and value need one element type")
        if not slice_indices_ok(shape_of(self.base_), self.starts, self.strides,
                                shape_of(self.value)):
            raise VerifyException(
                f"array.update_slice start {list(self.starts)} stride "
                f"{list(self.strides)} does not fit value {shape_of(self.value)} "
                f"into {shape_of(self.base_)}"
            )


def _check_index_tensor(op: Operation, indices: SSAValue) -> None:
    if element_type_of(indices) != i64:
        raise VerifyException(f"'{op.name}' indices must be i64, got {indices.type}")


def gather_shape(src: Sequence[int], idx: Sequence[int], axis: int) -> tuple[int, ...]:
    """Shape of `take(src, idx, axis)`."""
    return (*src[:axis], *idx, *src[axis + 1:])


@irdl_op_definition
class TakeOp(IRDLOperation):
    """numpy `take(operand, indices, axis)`; negative indices count from the end."""

    name = "array.take"
    operand = operand_def(AnyTensor)
    indices = operand_def(AnyTensor)
    result = result_def(AnyTensor)
    axis = prop_def(IntegerAttr[I64])
    traits = traits_def(Pure(), IndexMap(), ArrayCanonicalization())
    assembly_format = (
        "$operand `[` $indices `]` `axis` `=` $axis attr-dict `:` type($operand) `,` "
        "type($indices) `->` type($result)"
    )

    def __init__(self, operand: SSAValue | Operation, indices: SSAValue | Operation,
                 axis: int):
        operand, indices = SSAValue.get(operand), SSAValue.get(indices)
        shape = gather_shape(shape_of(operand), shape_of(indices), axis)
        build_fixed(self,
            operands=[operand, indices],
            properties={"axis": IntegerAttr(axis, i64)},
            result_types=[tensor_of(element_type_of(operand), shape)],
        )

    def verify_(self) -> None:
        _check_index_tensor(self, self.indices)
        src, axis = shape_of(self.operand), self.axis.value.data
        if not 0 <= axis < len(src):
            raise VerifyException(f"array.take axis {axis} out of rank {len(src)}")
        want = gather_shape(src, shape_of(self.indices), axis)
        if shape_of(self.result) != want:
            raise VerifyException(f"array.take result must have shape {want}")


@irdl_op_definition
class ScatterAddOp(IRDLOperation):
    """`base` plus `updates` added at `indices` along `axis` (the transpose of take)."""

    name = "array.scatter_add"
    T: ClassVar = VarConstraint("T", AnyTensor)
    base_ = operand_def(T)
    indices = operand_def(AnyTensor)
    updates = operand_def(AnyTensor)
    result = result_def(T)
    axis = prop_def(IntegerAttr[I64])
    traits = traits_def(Pure(), ReductionWithCombiner(ADD), ArrayCanonicalization())
    assembly_format = (
        "$base_ `[` $indices `]` `,` $updates `axis` `=` $axis attr-dict `:` "
        "type($base_) `,` type($indices) `,` type($updates)"
    )

    def __init__(self, base_: SSAValue | Operation, indices: SSAValue | Operation,
                 updates: SSAValue | Operation, axis: int):
        base_ = SSAValue.get(base_)
        build_fixed(self,
            operands=[base_, indices, updates],
            properties={"axis": IntegerAttr(axis, i64)},
            result_types=[base_.type],
        )

    def verify_(self) -> None:
        _check_index_tensor(self, self.indices)
        src, axis = shape_of(self.base_), self.axis.value.data
        if not 0 <= axis < len(src):
            raise VerifyException(f"array.scatter_add axis {axis} out of rank {len(src)}")
        want = gather_shape(src, shape_of(self.indices), axis)
        if shape_of(self.updates) != want:
            raise VerifyException(f"array.scatter_add updates must have shape {want}")


@irdl_op_definition
class ConcatenateOp(IRDLOperation):
    """numpy `concatenate` along `axis`."""

    name = "array.concatenate"
    inputs = var_operand_def(AnyTensor)
    result = result_def(AnyTensor)
    axis = prop_def(IntegerAttr[I64])
    traits = traits_def(Pure(), ArrayCanonicalization())
    assembly_format = (
        "$inputs `axis` `=` $axis attr-dict `:` type($inputs) `->` type($result)"
    )

    def __init__(self, inputs: Sequence[SSAValue | Operation], axis: int):
        vals = [SSAValue.get(v) for v in inputs]
        shape = list(shape_of(vals[0]))
        shape[axis] = sum(shape_of(v)[axis] for v in vals)
        super().__init__(
            operands=[vals],
            properties={"axis": IntegerAttr(axis, i64)},
            result_types=[tensor_of(element_type_of(vals[0]), shape)],
        )

    def verify_(self) -> None:
        axis = self.axis.value.data
        shapes = [shape_of(v) for v in self.inputs]
        if not shapes:
            raise VerifyException("array.concatenate needs at least one input")
        rank = len(shapes[0])
        if not 0 <= axis < rank:
            raise VerifyException(f"array.concatenate axis {axis} out of rank {rank}")
        for s, v in zip(shapes, self.inputs):
            if len(s) != rank or any(
                a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != axis
            ) or element_type_of(v) != element_type_of(self.result):
                raise VerifyException(
                    f"array.concatenate inputs must agree except along axis {axis}: "
                    f"{[str(v.type) for v in self.inputs]}"
                )
        want = list(shapes[0])
        want[axis] = sum(s[axis] for s in shapes)
        if list(shape_of(self.result)) != want:
            raise VerifyException(f"array.concatenate result must have shape {tuple(want)}")


# ----------------------------------------------------------------------------
# Writing a function argument in place
# ----------------------------------------------------------------------------


@irdl_op_definition
class AssignOp(IRDLOperation):
    """When the function returns, the buffer of its argument `target` holds `value`.

    The only op with a side effect on memory: everything else in the function reads
    `target` as the value it was called with, whatever the position of the assign, so
    the lowering may write in place wherever every read of the old value is done (or
    copy at the end). `target` is an argument of the enclosing function's entry block;
    an argument is assigned at most once.
    """

    name = "array.assign"
    T: ClassVar = VarConstraint("T", AnyTensor)
    target = operand_def(T)
    value = operand_def(T)
    traits = traits_def(MemoryWriteEffect())
    assembly_format = "$target `,` $value attr-dict `:` type($target)"

    def __init__(self, target: SSAValue | Operation, value: SSAValue | Operation):
        build_fixed(self, operands=[SSAValue.get(target), SSAValue.get(value)])

    def verify_(self) -> None:
        target = self.target
        block = self.parent_block()
        fn = block.parent_op() if block is not None else None
        if not (isinstance(target, BlockArgument) and isinstance(fn, func.FuncOp)
                and target.block is block and fn.body.blocks.first is block):
            raise VerifyException(
                "array.assign: the target must be an argument of the enclosing function, "
                "assigned from the function's entry block")
        for op in block.ops:
            if op is not self and isinstance(op, AssignOp) and op.target is target:
                raise VerifyException(
                    f"array.assign: argument {target.index} is assigned more than once")


def _size(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _defined_here() -> list[type[IRDLOperation]]:
    """Every op class of the `array` dialect, in the order this module defines them: a
    new op class is in the dialect (and in the groups below) with no list to extend."""
    return [v for v in list(globals().values())
            if isinstance(v, type) and issubclass(v, IRDLOperation) and v.__module__ == __name__
            and str(getattr(v, "name", "")).startswith("array.")]


ELEMENTWISE_UNARY: tuple[type[UnaryOp], ...] = tuple(
    op for op in _defined_here() if issubclass(op, UnaryOp))
ELEMENTWISE_BINARY: tuple[type[BinaryOp], ...] = tuple(
    op for op in _defined_here() if issubclass(op, BinaryOp))
REDUCTIONS: tuple[type[ReduceOp], ...] = tuple(
    op for op in _defined_here() if issubclass(op, ReduceOp))

Array = Dialect("array", _defined_here(), [])
