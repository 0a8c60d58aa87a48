"""The derivative rules of every dialect, and lookups that name what is missing."""

from __future__ import annotations

from xdsl.ir import Operation

from pullback.compiler.autodiff.rules import ad, array
from pullback.compiler.autodiff.rules.table import JvpRule, VjpRule

VJP_RULES: dict[type[Operation], VjpRule] = {**array.VJP_RULES, **ad.VJP_RULES}
JVP_RULES: dict[type[Operation], JvpRule] = {**array.JVP_RULES, **ad.JVP_RULES}


def _missing(op: Operation, kind: str, mode: str) -> NotImplementedError:
    dialect = op.name.split(".")[0]
    where = (f"in compiler/autodiff/rules/{dialect}.py" if dialect in ("array", "ad")
             else "with pullback.compiler.register_op (an op defined outside pullback)")
    return NotImplementedError(f"no {kind} rule for '{op.name}' ({mode} mode); register one "
                               f"{where}")


def vjp_rule(op: Operation) -> VjpRule:
    """The VJP rule of `op`'s class."""
    rule = VJP_RULES.get(type(op))
    if rule is None:
        raise _missing(op, "VJP", "reverse")
    return rule


def jvp_rule(op: Operation) -> JvpRule:
    """The JVP rule of `op`'s class."""
    rule = JVP_RULES.get(type(op))
    if rule is None:
        raise _missing(op, "JVP", "forward")
    return rule
