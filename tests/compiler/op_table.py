"""One row per `array` op: how to build it, what inputs it takes, which shapes to try.

The table only builds IR and describes inputs; it knows nothing of how the IR is
run, so the AD tests, the interpreter tests and the backend tests share it.
`one_op_module(row, case)` gives a module holding `@f`, a function whose body is
the single op; `sample_inputs(row, case, rng)` gives matching numpy inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.builder import ImplicitBuilder
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    FunctionType,
    ModuleOp,
    TensorType,
    f32,
    f64,
    i1,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from pullback.compiler.dialects import array as A

Shape = tuple[int, ...]
Build = Callable[..., Operation]
"""build(operands, float_type, **params) -> the op (not yet inserted anywhere)."""


@dataclass(frozen=True)
class Input:
    """One operand. kind: "float" (drawn from [low, high]), "int", "mask" or "index"
    (valid indices, negative ones included, into dimension `axis` of operand `of`)."""

    kind: str = "float"
    low: float = -2.0
    high: float = 2.0
    of: int = 0

    @property
    def differentiable(self) -> bool:
        return self.kind == "float"


@dataclass(frozen=True)
class Case:
    """Operand shapes plus the op's static parameters (axes, shapes, ...)."""

    shapes: tuple[Shape, ...]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        dims = ",".join("x".join(map(str, s)) or "0d" for s in self.shapes)
        extra = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"[{dims}]{extra}"


@dataclass(frozen=True)
class OpRow:
    """How to build one op, its inputs and its shape cases.

    `smooth`: derivatives may be checked by finite differences at random inputs.
    `elementwise`: any shape works (every operand has the same shape), so random
    shapes may be tried on top of `cases`.
    """

    name: str
    op: type[Operation]
    build: Build
    inputs: tuple[Input, ...]
    cases: tuple[Case, ...]
    smooth: bool = True
    elementwise: bool = False

    @property
    def differentiable(self) -> tuple[bool, ...]:
        return tuple(i.differentiable for i in self.inputs)


def _element_type(inp: Input, float_type: Attribute) -> Attribute:
    return {"float": float_type, "int": i64, "mask": i1, "index": i64}[inp.kind]


def one_op_module(row: OpRow, case: Case, float_type: Attribute = f64,
                  name: str = "f") -> ModuleOp:
    """A module with `@name(inputs...) -> result` whose body is the row's op."""
    types = [TensorType(_element_type(inp, float_type), shape)
             for inp, shape in zip(row.inputs, case.shapes, strict=True)]
    block = Block(arg_types=types)
    op = row.build(list(block.args), float_type, **case.params)
    block.add_op(op)
    block.add_op(func.ReturnOp(*op.results))
    f = func.FuncOp(name, (types, [r.type for r in op.results]), Region(block))
    return ModuleOp([f])


def sample_inputs(row: OpRow, case: Case, rng: np.random.Generator,
                  dtype: Any = np.float64) -> list[np.ndarray]:
    """Random inputs for the row's function, float ones of `dtype`."""
    out: list[np.ndarray] = []
    for inp, shape in zip(row.inputs, case.shapes, strict=True):
        if inp.kind == "float":
            out.append(rng.uniform(inp.low, inp.high, shape).astype(dtype))
        elif inp.kind == "int":
            out.append(rng.integers(-5, 6, shape).astype(np.int64))
        elif inp.kind == "mask":
            out.append(rng.random(shape) < 0.5)
        else:
            n = case.shapes[inp.of][case.params["axis"]]
            out.append(rng.integers(-n, n, shape).astype(np.int64))
    return out


# ----------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------

ELEMENTWISE_SHAPES: tuple[Shape, ...] = ((), (1,), (3,), (2, 3), (1, 4, 1))


def _same(n: int, *shapes: Shape) -> tuple[Case, ...]:
    return tuple(Case((s,) * n) for s in shapes or ELEMENTWISE_SHAPES)


def _unary(cls: type[A.UnaryOp], low: float = -2.0, high: float = 2.0,
           smooth: bool = True) -> OpRow:
    return OpRow(cls.name.split(".")[1], cls, lambda v, ft: cls(v[0]),
                 (Input("float", low, high),), _same(1), smooth, elementwise=True)


def _binary(cls: type[A.BinaryOp], lhs: Input = Input(), rhs: Input = Input()) -> OpRow:
    return OpRow(cls.name.split(".")[1], cls, lambda v, ft: cls(v[0], v[1]),
                 (lhs, rhs), _same(2), elementwise=True)


def _constant(v: Sequence[SSAValue], ft: Attribute, shape: Shape, values: list) -> Operation:
    return A.ConstantOp(DenseIntOrFPElementsAttr.from_list(TensorType(ft, shape), values))


def _convert_to(target: str) -> Build:
    def build(v: Sequence[SSAValue], ft: Attribute) -> Operation:
        src = A.element_type_of(v[0])
        if target == "other-float":
            return A.ConvertOp(v[0], f32 if src == f64 else f64)
        return A.ConvertOp(v[0], {"int": i64, "mask": i1, "float": ft}[target])
    return build


def _reduce(cls: type[A.ReduceOp], smooth: bool = True) -> OpRow:
    cases = (
        Case(((2, 3),), {"axes": [1]}), Case(((2, 3),), {"axes": [0, 1]}),
        Case(((3,),), {"axes": [0]}), Case(((2, 1, 3),), {"axes": [0, 2]}),
        Case(((),), {"axes": []}), Case(((2, 3),), {"axes": []}),
    )
    return OpRow(cls.name.split(".")[1], cls, lambda v, ft, axes: cls(v[0], axes),
                 (Input("float", 0.5, 2.0),), cases, smooth)


TABLE: tuple[OpRow, ...] = (
    OpRow("constant", A.ConstantOp, _constant, (), (
        Case((), {"shape": (2, 2), "values": [1.0, -2.0, 3.5, 0.0]}),
        Case((), {"shape": (), "values": [2.5]}),
    )),
    OpRow("full", A.FullOp, lambda v, ft, shape: A.FullOp(1.5, TensorType(ft, shape)), (), (
        Case((), {"shape": (2, 3)}), Case((), {"shape": ()}),
    )),
    _unary(A.NegOp),
    _unary(A.AbsOp),
    _unary(A.SignOp),
    _unary(A.ExpOp),
    _unary(A.LogOp, 0.1, 3.0),
    _unary(A.Log1pOp, -0.5, 2.0),
    _unary(A.Expm1Op),
    _unary(A.SqrtOp, 0.1, 3.0),
    _unary(A.SinOp),
    _unary(A.CosOp),
    _unary(A.TanOp, -1.2, 1.2),
    _unary(A.TanhOp),
    _unary(A.SinhOp),
    _unary(A.CoshOp),
    _unary(A.ArcsinOp, -0.9, 0.9),
    _unary(A.ArccosOp, -0.9, 0.9),
    _unary(A.ArctanOp),
    _binary(A.AddOp),
    _binary(A.SubOp),
    _binary(A.MulOp),
    _binary(A.DivOp, rhs=Input("float", 0.5, 2.0)),
    _binary(A.PowOp, lhs=Input("float", 0.2, 2.0)),
    _binary(A.MaximumOp),
    _binary(A.MinimumOp),
    _binary(A.Arctan2Op),
    OpRow("compare", A.CompareOp, lambda v, ft, predicate: A.CompareOp(predicate, v[0], v[1]),
          (Input(), Input()), tuple(
              Case((s, s), {"predicate": p}) for s, p in zip(
                  ELEMENTWISE_SHAPES, ("lt", "le", "gt", "ge", "eq"), strict=True)
          ) + (Case(((2,), (2,)), {"predicate": "ne"}),)),
    OpRow("select", A.SelectOp, lambda v, ft: A.SelectOp(v[0], v[1], v[2]),
          (Input("mask"), Input(), Input()), _same(3), elementwise=True),
    OpRow("convert_float", A.ConvertOp, _convert_to("other-float"), (Input(),), _same(1),
          elementwise=True),
    OpRow("convert_to_int", A.ConvertOp, _convert_to("int"), (Input(),), _same(1, (3,), ())),
    OpRow("convert_from_int", A.ConvertOp, _convert_to("float"), (Input("int"),),
          _same(1, (3,), ())),
    OpRow("convert_from_mask", A.ConvertOp, _convert_to("float"), (Input("mask"),),
          _same(1, (2, 2))),
    OpRow("broadcast", A.BroadcastOp, lambda v, ft, shape: A.BroadcastOp(v[0], shape),
          (Input(),), (
              Case(((3,),), {"shape": (2, 3)}), Case(((1, 3),), {"shape": (4, 3)}),
              Case(((),), {"shape": (2, 2)}), Case(((2, 1),), {"shape": (2, 3)}),
              Case(((1,),), {"shape": (1,)}), Case(((1, 2),), {"shape": (3, 1, 2)}),
          )),
    OpRow("reshape", A.ReshapeOp, lambda v, ft, shape: A.ReshapeOp(v[0], shape),
          (Input(),), (
              Case(((2, 3),), {"shape": (3, 2)}), Case(((6,),), {"shape": (1, 2, 3)}),
              Case(((),), {"shape": (1, 1)}), Case(((1,),), {"shape": ()}),
          )),
    OpRow("transpose", A.TransposeOp, lambda v, ft, perm: A.TransposeOp(v[0], perm),
          (Input(),), (
              Case(((2, 3),), {"perm": [1, 0]}), Case(((2, 3, 4),), {"perm": [2, 0, 1]}),
              Case(((),), {"perm": []}), Case(((1, 3),), {"perm": [0, 1]}),
          )),
    _reduce(A.ReduceSumOp),
    _reduce(A.ReduceProdOp),
    _reduce(A.ReduceMaxOp),
    _reduce(A.ReduceMinOp),
    OpRow("cumsum", A.CumsumOp,
          lambda v, ft, axis, reverse: A.CumsumOp(v[0], axis, reverse),
          (Input(),), (
              Case(((4,),), {"axis": 0, "reverse": False}),
              Case(((2, 3),), {"axis": 1, "reverse": True}),
              Case(((2, 3),), {"axis": 0, "reverse": False}),
              Case(((),), {"axis": 0, "reverse": True}),
          )),
    OpRow("matmul", A.MatmulOp, lambda v, ft: A.MatmulOp(v[0], v[1]), (Input(), Input()), (
        Case(((2, 3), (3, 4))), Case(((1, 1), (1, 1))), Case(((2, 2, 3), (2, 3, 1))),
        Case(((3, 1), (1, 2))),
    )),
    OpRow("slice", A.SliceOp,
          lambda v, ft, start, stride, shape: A.SliceOp(v[0], start, stride, shape),
          (Input(),), (
              Case(((5,),), {"start": [1], "stride": [2], "shape": [2]}),
              Case(((4, 3),), {"start": [3, 0], "stride": [-1, 2], "shape": [2, 2]}),
              Case(((3,),), {"start": [2], "stride": [-1], "shape": [3]}),
              Case(((),), {"start": [], "stride": [], "shape": []}),
              Case(((2, 1),), {"start": [1, 0], "stride": [1, 1], "shape": [1, 1]}),
          )),
    OpRow("update_slice", A.UpdateSliceOp,
          lambda v, ft, start, stride: A.UpdateSliceOp(v[0], v[1], start, stride),
          (Input(), Input()), (
              Case(((5,), (2,)), {"start": [1], "stride": [2]}),
              Case(((4, 3), (2, 2)), {"start": [3, 0], "stride": [-1, 2]}),
              Case(((), ()), {"start": [], "stride": []}),
              Case(((2, 3), (2, 3)), {"start": [0, 0], "stride": [1, 1]}),
          )),
    OpRow("take", A.TakeOp, lambda v, ft, axis: A.TakeOp(v[0], v[1], axis),
          (Input(), Input("index", of=0)), (
              Case(((4,), (3,)), {"axis": 0}), Case(((3, 4), (2, 2)), {"axis": 1}),
              Case(((3,), ()), {"axis": 0}), Case(((2, 3), (5,)), {"axis": 0}),
          )),
    OpRow("scatter_add", A.ScatterAddOp,
          lambda v, ft, axis: A.ScatterAddOp(v[0], v[1], v[2], axis),
          (Input(), Input("index", of=0), Input()), (
              Case(((4,), (3,), (3,)), {"axis": 0}),
              Case(((3, 4), (2, 2), (3, 2, 2)), {"axis": 1}),
              Case(((3,), (), ()), {"axis": 0}),
              Case(((2, 3), (5,), (5, 3)), {"axis": 0}),
          )),
    OpRow("concatenate", A.ConcatenateOp, lambda v, ft, axis: A.ConcatenateOp(v, axis),
          (Input(), Input(), Input()), (
              Case(((2,), (3,), (1,)), {"axis": 0}),
              Case(((2, 3), (2, 1), (2, 2)), {"axis": 1}),
              Case(((1, 2), (1, 2), (3, 2)), {"axis": 0}),
          )),
)

ROWS: dict[str, OpRow] = {row.name: row for row in TABLE}


def float_type_of(dtype: Any) -> Attribute:
    """The element type for a numpy float dtype."""
    return f32 if np.dtype(dtype) == np.float32 else f64


def build(make: Callable[..., Sequence[SSAValue]], arg_types: Sequence[Attribute],
          name: str = "f") -> ModuleOp:
    """A module with one function `@name(arg_types)` returning what `make(*args)` emits."""
    fn = func.FuncOp(name, (list(arg_types), []))
    with ImplicitBuilder(fn.body) as args:
        outs = list(make(*args))
        func.ReturnOp(*outs)
    fn.function_type = FunctionType.from_lists(list(arg_types), [o.type for o in outs])
    return ModuleOp([fn])
