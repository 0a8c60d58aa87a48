"""VJP and JVP rules of every `array` op.

Every op a rule emits is itself an `array` op with both rules, so the passes
compose (forward over reverse, reverse over reverse).

Conventions at points where a function is not differentiable:
* ties of `maximum`/`minimum` and of `reduce_max`/`reduce_min` split the gradient
  equally between the tied elements;
* `abs'(0) = 0`; `sign`, `compare`, constants and integer results have no derivative;
* `pow(x, y)`: d/dx is 0 where y == 0, d/dy is 0 where x == 0 (no NaN);
* `reduce_prod` gives the exact product of the other elements, also with one or
  more zeros among them; `sqrt` and `log` may give inf at 0.
"""

from __future__ import annotations

from xdsl.dialects.builtin import AnyFloat
from xdsl.ir import Operation, SSAValue

from pullback.compiler.autodiff.emit import Emitter
from pullback.compiler.autodiff.rules.table import Grads, Partial, RuleTable
from pullback.compiler.dialects import array as A

RULES = RuleTable()
VJP_RULES = RULES.vjp
JVP_RULES = RULES.jvp


def _is_float(value: SSAValue) -> bool:
    return isinstance(A.element_type_of(value), AnyFloat)


# ----------------------------------------------------------------------------
# No derivative
# ----------------------------------------------------------------------------

RULES.defzero(A.ConstantOp, A.FullOp, A.SignOp, A.CompareOp)
# An assign has no result: nothing flows back through it, and its tangent is nothing (the
# differentiated function keeps the write itself, as a primal op).
RULES.defzero(A.AssignOp)


# ----------------------------------------------------------------------------
# Elementwise, by their partial derivatives
# ----------------------------------------------------------------------------


def _x(op: Operation) -> SSAValue:
    return op.operands[0]


def _y(op: Operation) -> SSAValue:
    return op.results[0]


def _recip(e: Emitter, x: SSAValue) -> SSAValue:
    return e.div(e.full(1.0, x), x)


def _one_plus_square(e: Emitter, x: SSAValue, sign: float) -> SSAValue:
    """1 + sign * x**2."""
    sq = e.mul(x, x)
    one = e.full(1.0, x)
    return e.add(one, sq) if sign > 0 else e.sub(one, sq)


RULES.defderivative(A.AbsOp, lambda e, op: e.unary(A.SignOp, _x(op)))
RULES.defderivative(A.ExpOp, lambda e, op: _y(op))
RULES.defderivative(A.LogOp, lambda e, op: _recip(e, _x(op)))
RULES.defderivative(A.Log1pOp, lambda e, op: _recip(e, e.add(e.full(1.0, _x(op)), _x(op))))
RULES.defderivative(A.Expm1Op, lambda e, op: e.add(_y(op), e.full(1.0, _y(op))))
RULES.defderivative(A.SqrtOp, lambda e, op: e.div(e.full(0.5, _y(op)), _y(op)))
RULES.defderivative(A.SinOp, lambda e, op: e.unary(A.CosOp, _x(op)))
RULES.defderivative(A.CosOp, lambda e, op: e.neg(e.unary(A.SinOp, _x(op))))
RULES.defderivative(A.TanOp, lambda e, op: _one_plus_square(e, _y(op), 1.0))
RULES.defderivative(A.TanhOp, lambda e, op: _one_plus_square(e, _y(op), -1.0))
RULES.defderivative(A.SinhOp, lambda e, op: e.unary(A.CoshOp, _x(op)))
RULES.defderivative(A.CoshOp, lambda e, op: e.unary(A.SinhOp, _x(op)))
RULES.defderivative(
    A.ArcsinOp, lambda e, op: _recip(e, e.unary(A.SqrtOp, _one_plus_square(e, _x(op), -1.0)))
)
RULES.defderivative(
    A.ArccosOp,
    lambda e, op: e.neg(_recip(e, e.unary(A.SqrtOp, _one_plus_square(e, _x(op), -1.0)))),
)
RULES.defderivative(A.ArctanOp, lambda e, op: _recip(e, _one_plus_square(e, _x(op), 1.0)))

RULES.defderivative(
    A.DivOp,
    lambda e, op: _recip(e, op.operands[1]),
    lambda e, op: e.neg(e.div(_y(op), op.operands[1])),
)


def _pow_dbase(e: Emitter, op: Operation) -> SSAValue:
    """y * x**(y - 1), and 0 where y == 0 (x**0 is constant, also at x == 0)."""
    x, y = op.operands
    zero = e.full(0.0, y)
    d = e.mul(y, e.emit(A.PowOp(x, e.sub(y, e.full(1.0, y)))))
    return e.select(e.compare("eq", y, zero), zero, d)


def _pow_dexponent(e: Emitter, op: Operation) -> SSAValue:
    """x**y * log(x), with log(x) read as 0 where x == 0."""
    x = op.operands[0]
    safe = e.select(e.compare("eq", x, e.full(0.0, x)), e.full(1.0, x), x)
    return e.mul(_y(op), e.unary(A.LogOp, safe))


RULES.defderivative(A.PowOp, _pow_dbase, _pow_dexponent)


def _arctan2_over_norm(e: Emitter, op: Operation, numerator: SSAValue) -> SSAValue:
    """numerator / (y² + x²) for arctan2(y, x)."""
    y, x = op.operands
    return e.div(numerator, e.add(e.mul(x, x), e.mul(y, y)))


RULES.defderivative(
    A.Arctan2Op,
    lambda e, op: _arctan2_over_norm(e, op, op.operands[1]),  # d/dy = x / (x² + y²)
    lambda e, op: _arctan2_over_norm(e, op, e.neg(op.operands[0])),  # d/dx = -y / (x² + y²)
)


def _extremum_weights(winner: str):
    """Weight of each operand of maximum/minimum: 1 if it wins, 1/2 on a tie."""

    def lhs(e: Emitter, op: Operation) -> SSAValue:
        x, y = op.operands
        one, half, zero = e.full(1.0, x), e.full(0.5, x), e.full(0.0, x)
        tie = e.select(e.compare("eq", x, y), half, zero)
        return e.select(e.compare(winner, x, y), one, tie)

    def rhs(e: Emitter, op: Operation) -> SSAValue:
        return e.sub(e.full(1.0, op.operands[0]), lhs(e, op))

    return lhs, rhs


RULES.defderivative(A.MaximumOp, *_extremum_weights("gt"))
RULES.defderivative(A.MinimumOp, *_extremum_weights("lt"))


# ----------------------------------------------------------------------------
# Linear and bilinear ops
# ----------------------------------------------------------------------------

RULES.deflinear(A.NegOp, lambda e, op, g, needs: (e.neg(g),))
RULES.deflinear(A.AddOp, lambda e, op, g, needs: (g, g))
RULES.deflinear(
    A.SubOp, lambda e, op, g, needs: (g, e.neg(g) if needs[1] else None)
)
RULES.defbilinear(
    A.MulOp,
    lambda e, op, g: e.mul(g, op.operands[1]),
    lambda e, op, g: e.mul(op.operands[0], g),
)
RULES.defbilinear(
    A.MatmulOp,
    lambda e, op, g: e.matmul(g, e.matrix_transpose(op.operands[1])),
    lambda e, op, g: e.matmul(e.matrix_transpose(op.operands[0]), g),
)


def _broadcast_vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
    """Sum over the added leading axes and the stretched size-1 axes."""
    src, dst = A.shape_of(op.operands[0]), A.shape_of(op.results[0])
    lead = len(dst) - len(src)
    axes = [i for i in range(len(dst)) if i < lead or (src[i - lead] == 1 and dst[i] != 1)]
    return (e.reshape(e.reduce_sum(g, axes), src),)


def _transpose_vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
    assert isinstance(op, A.TransposeOp)
    perm = op.perm
    inverse = [perm.index(i) for i in range(len(perm))]
    return (e.transpose(g, inverse),)


def _reduce_sum_vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
    assert isinstance(op, A.ReduceSumOp)
    return (e.unreduce(g, op.axis_list, A.shape_of(op.operand)),)


def _cumsum_vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
    assert isinstance(op, A.CumsumOp)
    return (e.emit(A.CumsumOp(g, op.axis.value.data, reverse=op.reverse is None)),)


def _convert_vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
    x = op.operands[0]
    return (e.convert(g, A.element_type_of(x)) if _is_float(x) else None,)


def _convert_jvp(e: Emitter, op: Operation, tangents: tuple[SSAValue | None, ...]):
    (t,) = tangents
    if t is None or not _is_float(op.results[0]):
        return None
    return e.convert(t, A.element_type_of(op.results[0]))


def _slice_vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
    assert isinstance(op, A.SliceOp)
    base = e.zeros(op.operand)
    return (e.emit(A.UpdateSliceOp(base, g, op.starts, op.strides)),)


def _update_slice_vjp(e: Emitter, op: Operation, g: SSAValue,
                      needs: tuple[bool, ...]) -> Grads:
    assert isinstance(op, A.UpdateSliceOp)
    value = op.value
    base_grad = value_grad = None
    if needs[0]:
        base_grad = e.emit(A.UpdateSliceOp(g, e.zeros(value), op.starts, op.strides))
    if needs[1]:
        value_grad = e.emit(A.SliceOp(g, op.starts, op.strides, A.shape_of(value)))
    return base_grad, value_grad


def _take_vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
    assert isinstance(op, A.TakeOp)
    base = e.zeros(op.operand)
    return e.emit(A.ScatterAddOp(base, op.indices, g, op.axis.value.data)), None


def _scatter_add_vjp(e: Emitter, op: Operation, g: SSAValue,
                     needs: tuple[bool, ...]) -> Grads:
    assert isinstance(op, A.ScatterAddOp)
    updates = e.emit(A.TakeOp(g, op.indices, op.axis.value.data)) if needs[2] else None
    return g, None, updates


def _concatenate_vjp(e: Emitter, op: Operation, g: SSAValue,
                     needs: tuple[bool, ...]) -> Grads:
    assert isinstance(op, A.ConcatenateOp)
    axis = op.axis.value.data
    grads: list[SSAValue | None] = []
    offset = 0
    for x, need in zip(op.inputs, needs, strict=True):
        shape = A.shape_of(x)
        if need:
            start = [offset if i == axis else 0 for i in range(len(shape))]
            grads.append(e.emit(A.SliceOp(g, start, [1] * len(shape), shape)))
        else:
            grads.append(None)
        offset += shape[axis]
    return tuple(grads)


RULES.deflinear(A.BroadcastOp, _broadcast_vjp)
RULES.deflinear(
    A.ReshapeOp, lambda e, op, g, needs: (e.reshape(g, A.shape_of(op.operands[0])),)
)
RULES.deflinear(A.TransposeOp, _transpose_vjp)
RULES.deflinear(A.ReduceSumOp, _reduce_sum_vjp)
RULES.deflinear(A.CumsumOp, _cumsum_vjp)
RULES.define(A.ConvertOp, _convert_vjp, _convert_jvp)
RULES.deflinear(A.SliceOp, _slice_vjp)
RULES.deflinear(A.UpdateSliceOp, _update_slice_vjp)
RULES.deflinear(A.TakeOp, _take_vjp, linear=(0,))
RULES.deflinear(A.ScatterAddOp, _scatter_add_vjp, linear=(0, 2))
RULES.deflinear(A.ConcatenateOp, _concatenate_vjp)


# ----------------------------------------------------------------------------
# Select: linear in the two branches, not differentiable in the condition
# ----------------------------------------------------------------------------


def _select_vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
    cond = op.operands[0]
    on_true = e.select(cond, g, e.zeros(g)) if needs[1] else None
    on_false = e.select(cond, e.zeros(g), g) if needs[2] else None
    return None, on_true, on_false


RULES.deflinear(A.SelectOp, _select_vjp, linear=(1, 2))


# ----------------------------------------------------------------------------
# Nonlinear reductions: VJP = g spread back times d result / d x;
# JVP = sum over the axes of t times the same weights
# ----------------------------------------------------------------------------


def _prod_others(e: Emitter, op: Operation) -> SSAValue:
    """For each element, the product of the other elements of its reduction group.

    Exact with zeros: no zero in the group gives p / x; exactly one zero gives the
    product of the nonzeros at the zero and 0 elsewhere; two or more give 0.
    """
    assert isinstance(op, A.ReduceOp)
    x, axes, shape = op.operand, op.axis_list, A.shape_of(op.operand)
    zero, one = e.full(0.0, x), e.full(1.0, x)
    is_zero = e.compare("eq", x, zero)
    safe = e.select(is_zero, one, x)
    prod = e.unreduce(e.reduce(A.ReduceProdOp, safe, axes), axes, shape)
    count = e.unreduce(e.reduce_sum(e.select(is_zero, one, zero), axes), axes, shape)
    at_zero = e.select(e.compare("eq", count, one), prod, zero)
    elsewhere = e.select(e.compare("eq", count, zero), e.div(prod, safe), zero)
    return e.select(is_zero, at_zero, elsewhere)


def _extremum_share(e: Emitter, op: Operation) -> SSAValue:
    """1 / (number of ties) at the elements equal to the extremum, 0 elsewhere."""
    assert isinstance(op, A.ReduceOp)
    x, axes, shape = op.operand, op.axis_list, A.shape_of(op.operand)
    zero, one = e.full(0.0, x), e.full(1.0, x)
    hit = e.select(e.compare("eq", x, e.unreduce(op.result, axes, shape)), one, zero)
    count = e.unreduce(e.reduce_sum(hit, axes), axes, shape)
    return e.div(hit, count)


def defreduction(cls: type[A.ReduceOp], weights: Partial) -> None:
    """A reduction whose derivative is d result / d x = `weights(e, op)`."""

    def vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
        assert isinstance(op, A.ReduceOp)
        spread = e.unreduce(g, op.axis_list, A.shape_of(op.operand))
        return (e.mul(spread, weights(e, op)),)

    def jvp(e: Emitter, op: Operation, tangents: tuple[SSAValue | None, ...]):
        assert isinstance(op, A.ReduceOp)
        (t,) = tangents
        if t is None:
            return None
        return e.reduce_sum(e.mul(t, weights(e, op)), op.axis_list)

    RULES.define(cls, vjp, jvp)


defreduction(A.ReduceProdOp, _prod_others)
defreduction(A.ReduceMaxOp, _extremum_share)
defreduction(A.ReduceMinOp, _extremum_share)
