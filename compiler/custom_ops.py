"""`register_op`: an elementwise op defined outside pullback, with its rules and lowering.

The op is an xDSL class written like pullback's own (`docs/compiler/adding-an-op.md`):
`@irdl_op_definition`, a name in a dialect of its own, operands and result of one
tensor type (subclass `array.UnaryOp` / `array.BinaryOp`), and the traits that state
the facts the compiler reads: `Elementwise` (required: what fuses, batches and lowers
elementwise), `FloatOnly`, `Expensive`. `register_op` gives it, once per process, what
pullback's own ops get from its tables:

* its derivatives: `derivative=` the partial derivative of the result by each operand,
  `(emitter, op) -> value` (the VJP and the JVP follow, as from `defderivative`), or
  `vjp=` and `jvp=` rules with the signatures of `autodiff/rules/table.py`;
* `interpret=`: the op on numpy arrays (the reference interpreter; the DSL function
  from `pb.custom_op` runs it on untraced inputs);
* `lower=`: the scalar computation of one element from existing `arith` / `math` ops,
  `(writer, op, scalar operands) -> scalar result` (a `SCALAR_RULES` rule), unless the
  `Elementwise` trait names the one standard op that computes an element;
* `batch=`: its batching rule; by default the rule every elementwise op has.

Registration is checked as the coverage test checks pullback's own ops
(`custom_op_trials.py`), and refused with a message naming what is wrong before any
table changes. Op names are unique in a process: a name is never registered twice, so a
compiled program cannot be confused with another op's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from xdsl.ir import Operation
from xdsl.irdl import IRDLOperation
from xdsl.irdl.operations import VariadicDef

from pullback.compiler.autodiff import rules
from pullback.compiler.autodiff.rules.batch import BATCH_RULES, BatchRule, elementwise_rule
from pullback.compiler.autodiff.rules.table import JvpRule, Partial, RuleTable, VjpRule
from pullback.compiler.context import make_context
from pullback.compiler.conversion import scalar_ops
from pullback.compiler.conversion.scalar_ops import SCALAR_RULES, ScalarRule
from pullback.compiler.custom_op_trials import run_trials
from pullback.compiler.dialects.extension_ops import EXTENSION_OPS, ExtensionOp
from pullback.compiler.dialects.traits import Elementwise
from pullback.compiler.interpreter import IMPLS

Interpret = Callable[..., Any]


_LOCK = threading.Lock()
"""Held while an op is registered: a name is checked and taken at once."""


def register_op(cls: type[Operation], *, derivative: Partial | Sequence[Partial] | None = None,
                vjp: VjpRule | None = None, jvp: JvpRule | None = None,
                interpret: Interpret | None = None, lower: ScalarRule | None = None,
                batch: BatchRule | None = None) -> None:
    """Register the elementwise op class `cls`, defined outside pullback, in every table
    the compiler reads (see the module docstring for each argument).

    Raises TypeError for a class that is not an elementwise IRDL op of fixed arity, and
    ValueError, naming each missing or conflicting part, for an incomplete registration
    or one whose trial derivative, batching or lowering fails; a refused op is in no
    table."""
    with _LOCK:
        arity = _check_class(cls)
        what = f"register_op({cls.__name__})"
        partials = _partials(what, derivative, arity)
        _check_parts(what, cls, partials, vjp, jvp, interpret, lower, batch)
        if partials is not None:
            table = RuleTable()
            table.defderivative(cls, *partials)
            vjp, jvp = table.vjp[cls], table.jvp[cls]
        assert vjp is not None and jvp is not None and interpret is not None
        reference = interpret

        def impl(op: Operation, *arrays: Any) -> Any:
            return reference(*arrays)

        entries: list[tuple[dict[Any, Any], Any, Any]] = [
            (rules.VJP_RULES, cls, vjp), (rules.JVP_RULES, cls, jvp),
            (BATCH_RULES, cls, batch or elementwise_rule), (IMPLS, cls, impl),
            (EXTENSION_OPS, cls.name, ExtensionOp(cls, reference, arity)),
        ]
        if lower is not None:
            entries.append((SCALAR_RULES, cls, lower))
        for table_, key, value in entries:
            table_[key] = value
        scalar_ops.scalar_rule.cache_clear()  # it may have answered None for `cls` before
        try:
            run_trials(what, cls, arity)
        except BaseException:
            for table_, key, _ in entries:
                del table_[key]
            scalar_ops.scalar_rule.cache_clear()
            raise


def _check_parts(what: str, cls: type[Operation], partials: tuple[Partial, ...] | None,
                 vjp: VjpRule | None, jvp: JvpRule | None, interpret: Interpret | None,
                 lower: ScalarRule | None, batch: BatchRule | None) -> None:
    """Refuse a registration that lacks a part (naming every one), gives two ways to one
    part, or gives a part that is not callable."""
    trait = cls.get_trait(Elementwise)
    assert trait is not None
    missing = []
    if partials is None and (vjp is None or jvp is None):
        if vjp is None and jvp is None:
            missing.append("its derivative: derivative= (one partial derivative per operand, "
                           "(emitter, op) -> value) or both vjp= and jvp=")
        else:
            missing.append(f"a {'JVP' if jvp is None else 'VJP'} rule: vjp= and jvp= go "
                           "together (or give derivative= instead)")
    if interpret is None:
        missing.append("an interpreter implementation: interpret= (the op on numpy arrays)")
    if lower is None and trait.float_op is None:
        missing.append("a lowering: lower= ((writer, op, scalar operands) -> scalar result, "
                       "built from arith / math ops), or a standard scalar op named by its "
                       "Elementwise trait")
    if missing:
        raise ValueError(f"{what}: '{cls.name}' lacks " + "; ".join(missing))
    if partials is not None and (vjp is not None or jvp is not None):
        raise ValueError(f"{what}: give either derivative= or vjp= and jvp=, not both")
    if lower is not None and trait.float_op is not None:
        raise ValueError(f"{what}: its Elementwise trait names {trait.float_op.name}, which "
                         "is its lowering; pass no lower= (or name no op in the trait)")
    for name, fn in (("vjp", vjp), ("jvp", jvp), ("interpret", interpret), ("lower", lower),
                     ("batch", batch), *(("derivative", p) for p in partials or ())):
        if fn is not None and not callable(fn):
            raise TypeError(f"{what}: {name}= must be callable, got {fn!r}")


def _check_class(cls: Any) -> int:
    """The number of operands of `cls`, checked to be an elementwise op that may be
    registered under its name."""
    if not (isinstance(cls, type) and issubclass(cls, IRDLOperation)
            and isinstance(getattr(cls, "name", None), str)):
        raise TypeError(f"register_op needs an op class made with @irdl_op_definition, "
                        f"got {cls!r}")
    what = f"register_op({cls.__name__})"
    name = cls.name
    dialect, dot, rest = name.partition(".")
    if not (dialect and dot and rest):
        raise ValueError(f"{what}: the op name must be 'dialect.op', got {name!r}")
    ctx = make_context()
    taken = sorted(d.name for d in ctx.loaded_dialects)
    if dialect in taken:
        raise ValueError(f"{what}: '{name}' is in the '{dialect}' dialect, which is "
                         f"pullback's or a standard one ({', '.join(taken)}); name the op "
                         "in a dialect of your own, such as 'mylib.op'")
    if name in EXTENSION_OPS:
        raise ValueError(f"{what}: an op named '{name}' is already registered "
                         f"(by {EXTENSION_OPS[name].cls.__qualname__}); op names are unique "
                         "in a process: choose another name")
    if cls.get_trait(Elementwise) is None:
        raise TypeError(f"{what}: '{name}' has no Elementwise trait; register_op defines "
                        "elementwise ops (operands and result of one tensor type), which "
                        "state it in their traits")
    op_def = cls.get_irdl_definition()
    variadic = [n for n, d in (*op_def.operands, *op_def.results) if isinstance(d, VariadicDef)]
    if variadic or not op_def.operands or len(op_def.results) != 1 or op_def.regions \
            or op_def.successors:
        raise TypeError(f"{what}: '{name}' must take a fixed number (at least one) of "
                        "tensor operands and give one result, with no regions"
                        + (f" (variadic: {', '.join(variadic)})" if variadic else ""))
    return len(op_def.operands)


def _partials(what: str, derivative: Partial | Sequence[Partial] | None,
              arity: int) -> tuple[Partial, ...] | None:
    """`derivative=` as one partial per operand (a lone callable for a unary op)."""
    if derivative is None:
        return None
    if callable(derivative):
        partials: tuple[Partial, ...] = (derivative,)
    elif isinstance(derivative, Sequence):
        partials = tuple(derivative)
    else:
        raise TypeError(f"{what}: derivative= takes a partial derivative (a callable), or a "
                        f"sequence of them, one per operand; got {derivative!r}")
    if len(partials) != arity:
        raise ValueError(f"{what}: derivative= needs one partial derivative per operand "
                         f"({arity}), got {len(partials)}")
    return partials
