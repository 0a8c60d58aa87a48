"""Dialects, passes, lowerings and backends; works on IR alone.

`register_pass(name, cls)` adds a pass of your own to the registry, for `pullback opt`
pipelines and for `pb.compile(..., passes=...)`.
"""

from pullback.compiler.passes import register_pass

__all__ = ["register_pass"]
