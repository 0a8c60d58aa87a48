"""Rule signatures and `RuleTable`, whose registrars encode the common algebra.

A VJP rule gets the emitter, the (cloned) primal op, the cotangent of its result
and which operands need a gradient; it returns one entry per operand (None: no
gradient). A JVP rule gets the emitter, the primal op and one tangent per operand
(None: zero or inactive) and returns the result's tangent (None: zero).

Registrars, so that most ops declare only what is particular to them:
* `defzero`: derivative is zero everywhere (constants, masks, integer results).
* `deflinear`: the op is linear in some operands; its JVP is the op itself applied
  to the tangents, and only the transpose (the VJP) is written.
* `defbilinear`: the op is bilinear (mul, matmul); two transposes give both rules.
* `defderivative`: elementwise ops given by their partial derivatives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from xdsl.ir import Operation, SSAValue

from pullback.compiler.autodiff.emit import Emitter

Grads = tuple[SSAValue | None, ...]
VjpRule = Callable[[Emitter, Operation, SSAValue, tuple[bool, ...]], Grads]
JvpRule = Callable[[Emitter, Operation, tuple[SSAValue | None, ...]], SSAValue | None]
Transpose = Callable[[Emitter, Operation, SSAValue, tuple[bool, ...]], Grads]
Partial = Callable[[Emitter, Operation], SSAValue]
"""d result / d operand, elementwise, from the primal op (operands and result)."""


def _sum(e: Emitter, terms: Sequence[SSAValue]) -> SSAValue | None:
    total = None
    for t in terms:
        total = t if total is None else e.add(total, t)
    return total


def _apply_to_tangents(e: Emitter, op: Operation, tangents: Sequence[SSAValue | None],
                       linear: Sequence[int]) -> SSAValue | None:
    """The op re-applied with tangents (zeros where None) in the `linear` positions."""
    if all(tangents[i] is None for i in linear):
        return None
    operands = list(op.operands)
    for i in linear:
        t = tangents[i]
        operands[i] = e.zeros(operands[i]) if t is None else t
    return e.emit(type(op).create(
        operands=operands,
        result_types=[r.type for r in op.results],
        properties=dict(op.properties),
        attributes=dict(op.attributes),
    ))


@dataclass
class RuleTable:
    """The VJP and JVP rules of one dialect, keyed by op class."""

    vjp: dict[type[Operation], VjpRule] = field(default_factory=dict)
    jvp: dict[type[Operation], JvpRule] = field(default_factory=dict)

    def define(self, cls: type[Operation], vjp: VjpRule, jvp: JvpRule) -> None:
        """Register both rules of `cls`."""
        self.vjp[cls] = vjp
        self.jvp[cls] = jvp

    def defzero(self, *classes: type[Operation]) -> None:
        """Ops whose derivative is zero (or undefined) everywhere."""
        for cls in classes:
            self.define(
                cls,
                lambda e, op, g, needs: (None,) * len(op.operands),
                lambda e, op, tangents: None,
            )

    def deflinear(self, cls: type[Operation], transpose: Transpose,
                  linear: Sequence[int] | None = None) -> None:
        """An op linear in the operands at `linear` (default: all of them)."""

        def jvp(e: Emitter, op: Operation, tangents: tuple[SSAValue | None, ...]):
            positions = range(len(op.operands)) if linear is None else linear
            return _apply_to_tangents(e, op, tangents, positions)

        self.define(cls, transpose, jvp)

    def defbilinear(self, cls: type[Operation],
                    lhs_transpose: Callable[[Emitter, Operation, SSAValue], SSAValue],
                    rhs_transpose: Callable[[Emitter, Operation, SSAValue], SSAValue]) -> None:
        """A binary op linear in each operand: op(t1, y) + op(x, t2)."""

        def vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
            return (
                lhs_transpose(e, op, g) if needs[0] else None,
                rhs_transpose(e, op, g) if needs[1] else None,
            )

        def jvp(e: Emitter, op: Operation, tangents: tuple[SSAValue | None, ...]):
            terms = [
                _apply_to_tangents(e, op, [t if j == i else None for j in range(2)], [i])
                for i, t in enumerate(tangents) if t is not None
            ]
            return _sum(e, [t for t in terms if t is not None])

        self.define(cls, vjp, jvp)

    def defderivative(self, cls: type[Operation], *partials: Partial) -> None:
        """An elementwise op given by one partial derivative per operand."""

        def vjp(e: Emitter, op: Operation, g: SSAValue, needs: tuple[bool, ...]) -> Grads:
            pairs = zip(partials, needs, strict=True)
            return tuple(e.mul(g, d(e, op)) if need else None for d, need in pairs)

        def jvp(e: Emitter, op: Operation, tangents: tuple[SSAValue | None, ...]):
            pairs = zip(partials, tangents, strict=True)
            return _sum(e, [e.mul(t, d(e, op)) for d, t in pairs if t is not None])

        self.define(cls, vjp, jvp)
