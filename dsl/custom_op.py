"""`custom_op`: the DSL function of an op registered from outside pullback.

`pb.custom_op(SoftplusOp)` gives `softplus(x)`, which behaves like the DSL's own
elementwise functions: on traced values it records the op over operands promoted to
one dtype (a float one where the op is `FloatOnly`) and broadcast to one shape; on
anything else it runs the op's numpy implementation (`interpret=` of `register_op`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xdsl.ir import Operation

from pullback.compiler.dialects.extension_ops import extension_op
from pullback.compiler.dialects.traits import FloatOnly, has
from pullback.dsl.core import elementwise, is_traced


def custom_op(cls: type[Operation], name: str | None = None) -> Callable[..., Any]:
    """The DSL function of op class `cls`, registered with
    `pullback.compiler.register_op`; `name` (default: the op's name after its dialect)
    names it in error messages and as the function's `__name__`."""
    entry = extension_op(cls)
    if entry is None:
        shown = getattr(cls, "name", None) or repr(cls)
        raise ValueError(f"custom_op: op class {getattr(cls, '__name__', cls)!s} ('{shown}') "
                         "is not registered; register it first with "
                         "pullback.compiler.register_op(cls, derivative=..., interpret=..., "
                         "lower=...)")
    label = name or cls.name.partition(".")[2]
    float_result = has(cls, FloatOnly)
    arity, reference = entry.arity, entry.reference

    def fn(*args: Any) -> Any:
        if len(args) != arity:
            raise TypeError(f"{label}() takes {arity} array argument(s), got {len(args)}")
        if not is_traced(*args):
            return reference(*args)
        return elementwise(cls, list(args), label, float_result=float_result)

    fn.__name__ = fn.__qualname__ = label
    fn.__doc__ = f"Elementwise `{cls.name}` (registered with register_op), with broadcasting."
    return fn
