"""Ops defined outside pullback, as far as the dialect level knows them.

`pullback.compiler.register_op` (`compiler/custom_ops.py`) checks an op class and fills
the compiler's tables; it records the class here, by its op name, with its numpy
reference implementation. The context loads these classes (so IR text naming them
parses), the DSL makes its wrapper from them (`pb.custom_op`), and the runtime keeps
programs holding them out of the disk cache (their rules' code is not part of its key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xdsl.ir import Operation


@dataclass(frozen=True)
class ExtensionOp:
    """An op class registered from outside pullback, and what computes it in numpy."""

    cls: type[Operation]
    reference: Callable[..., Any]
    """The op on numpy arrays: one array per operand in, the result array out."""
    arity: int
    """How many operands the op takes."""


EXTENSION_OPS: dict[str, ExtensionOp] = {}
"""Every op registered from outside pullback, by op name (unique in a process)."""


def extension_op(cls: type[Operation]) -> ExtensionOp | None:
    """The registration of op class `cls`, or None when it is not registered."""
    entry = EXTENSION_OPS.get(getattr(cls, "name", ""))
    return entry if entry is not None and entry.cls is cls else None


def holds_extension_op(module: Operation) -> bool:
    """Whether `module` holds an op registered from outside pullback (answered without
    a walk while none is registered)."""
    if not EXTENSION_OPS:
        return False
    return any(op.name in EXTENSION_OPS for op in module.walk())
