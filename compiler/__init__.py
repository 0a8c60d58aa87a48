"""Dialects, passes, lowerings and backends; works on IR alone.

`register_pass(name, cls)` adds a pass of your own to the registry, for `pullback opt`
pipelines and for `pb.compile(..., passes=...)`. `register_op(cls, ...)` adds an
elementwise op defined outside pullback, with its rules and lowering, to every table
the compiler reads (`custom_ops.py`; imported when first asked for).
"""

from typing import Any

from pullback.compiler.passes import register_pass

__all__ = ["register_op", "register_pass"]


def __getattr__(name: str) -> Any:
    if name == "register_op":
        from pullback.compiler.custom_ops import register_op

        return register_op
    raise AttributeError(f"module 'pullback.compiler' has no attribute {name!r}")
