"""Scalar bodies of the elementwise `array` ops, as arith / math ops on one element.

`scalar_rule(OpClass)(w, op, args)` emits the scalar computation of one element of
`op` from the scalar values of its operands and returns the result value: the standard
ops the op's `Elementwise` trait names, or its row in `SCALAR_RULES` (ops that need
more than one op). Float and integer element types pick different arith ops; bad
element types raise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from xdsl.dialects import arith, math
from xdsl.dialects.builtin import AnyFloat, f32, f64, i1, i64
from xdsl.ir import Attribute, Operation, SSAValue

from pullback.compiler.conversion.kernel_writer import KernelWriter
from pullback.compiler.diagnostics import located
from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.traits import Elementwise

ScalarRule = Callable[[KernelWriter, Operation, Sequence[SSAValue]], SSAValue]


def _is_float(t: Attribute) -> bool:
    return isinstance(t, AnyFloat)


def _unsupported(op: Operation, t: Attribute) -> NotImplementedError:
    return NotImplementedError(located(op, f"'{op.name}' has no lowering for element type {t}"))


def _standard(float_op: type[Operation], int_op: type[Operation] | None) -> ScalarRule:
    """One standard op on the element's operands: `float_op` for floats, `int_op` for
    signed integers (None: integers are refused, as are masks)."""
    def rule(w: KernelWriter, op: Operation, args: Sequence[SSAValue]) -> SSAValue:
        t = args[0].type
        if _is_float(t):
            return w.add(float_op(*args))
        if int_op is None or t == i1:
            raise _unsupported(op, t)
        return w.add(int_op(*args))

    return rule


def _neg(w: KernelWriter, op: Operation, args: Sequence[SSAValue]) -> SSAValue:
    t = args[0].type
    if _is_float(t):
        return w.add(arith.NegfOp(args[0]))
    if t == i1:
        raise _unsupported(op, t)
    return w.add(arith.SubiOp(w.constant(0, t), args[0]))


def _abs(w: KernelWriter, op: Operation, args: Sequence[SSAValue]) -> SSAValue:
    t = args[0].type
    if _is_float(t):
        return w.add(math.AbsFOp(args[0]))
    if t == i1:
        raise _unsupported(op, t)
    return w.add(math.AbsIOp(args[0]))


def _sign(w: KernelWriter, op: Operation, args: Sequence[SSAValue]) -> SSAValue:
    x, t = args[0], args[0].type
    if t == i1:
        raise _unsupported(op, t)
    zero, one, minus = w.constant(0, t), w.constant(1, t), w.constant(-1, t)
    if _is_float(t):
        pos = w.add(arith.CmpfOp(x, zero, "ogt"))
        neg = w.add(arith.CmpfOp(x, zero, "olt"))
        inner = w.add(arith.SelectOp(neg, minus, x))  # keeps 0 and nan as they are
    else:
        pos = w.add(arith.CmpiOp(x, zero, "sgt"))
        neg = w.add(arith.CmpiOp(x, zero, "slt"))
        inner = w.add(arith.SelectOp(neg, minus, zero))
    return w.add(arith.SelectOp(pos, one, inner))


_FLOAT_PREDICATES = {"lt": "olt", "le": "ole", "gt": "ogt", "ge": "oge", "eq": "oeq", "ne": "une"}
_INT_PREDICATES = {"lt": "slt", "le": "sle", "gt": "sgt", "ge": "sge", "eq": "eq", "ne": "ne"}
_MASK_PREDICATES = {"lt": "ult", "le": "ule", "gt": "ugt", "ge": "uge", "eq": "eq", "ne": "ne"}


def _compare(w: KernelWriter, op: Operation, args: Sequence[SSAValue]) -> SSAValue:
    assert isinstance(op, A.CompareOp)
    pred, t = op.predicate.data, args[0].type
    if _is_float(t):
        return w.add(arith.CmpfOp(args[0], args[1], _FLOAT_PREDICATES[pred]))
    table = _MASK_PREDICATES if t == i1 else _INT_PREDICATES
    return w.add(arith.CmpiOp(args[0], args[1], table[pred]))


def _select(w: KernelWriter, op: Operation, args: Sequence[SSAValue]) -> SSAValue:
    return w.add(arith.SelectOp(args[0], args[1], args[2]))


def _convert(w: KernelWriter, op: Operation, args: Sequence[SSAValue]) -> SSAValue:
    assert isinstance(op, A.ConvertOp)
    x, src, dst = args[0], args[0].type, A.element_type_of(op.result)
    if src == dst:
        return x
    if dst == i1:
        if _is_float(src):
            return w.add(arith.CmpfOp(x, w.constant(0.0, src), "une"))
        return w.add(arith.CmpiOp(x, w.constant(0, src), "ne"))
    if src == i1:
        return w.add(arith.SelectOp(x, w.constant(1, dst), w.constant(0, dst)))
    if _is_float(src) and _is_float(dst):
        widen = src == f32 and dst == f64
        return w.add(arith.ExtFOp(x, dst) if widen else arith.TruncFOp(x, dst))
    if _is_float(src) and dst == i64:
        return w.add(arith.FPToSIOp(x, dst))
    if src == i64 and _is_float(dst):
        return w.add(arith.SIToFPOp(x, dst))
    raise _unsupported(op, dst)


SCALAR_RULES: dict[type[Operation], ScalarRule] = {
    A.NegOp: _neg,
    A.AbsOp: _abs,
    A.SignOp: _sign,
    A.CompareOp: _compare,
    A.SelectOp: _select,
    A.ConvertOp: _convert,
}
"""Rules of the elementwise ops whose `Elementwise` trait names no standard scalar op."""


@functools.cache
def scalar_rule(cls: type[Operation]) -> ScalarRule | None:
    """The scalar rule of elementwise op class `cls`: its `SCALAR_RULES` row, else one
    applying the standard ops its `Elementwise` trait names; None for other ops."""
    if cls in SCALAR_RULES:
        return SCALAR_RULES[cls]
    trait = cls.get_trait(Elementwise)
    if trait is None or trait.float_op is None:
        return None
    return _standard(trait.float_op, trait.int_op)
