"""Errors that name the source line of the op they are about.

Traced ops carry the user's `file:line:column` as their MLIR location (derivative ops
that of the primal op they come from). An error about one op begins with it, as
compilers write it: `model.py:12:9: 'array.sin' has no lowering for element type i64`.
"""

from __future__ import annotations

from xdsl.dialects.builtin import CallSiteLoc, FileLineColLoc, FusedLoc, NameLoc
from xdsl.ir import Attribute, Operation
from xdsl.utils.exceptions import DiagnosticException, VerifyException


def describe(location: Attribute) -> str | None:
    """`file:line:column` of a location (the first file location inside a name,
    call-site or fused one); None when it names no file."""
    match location:
        case FileLineColLoc():
            return f"{location.filename.data}:{location.line.data}:{location.column.data}"
        case NameLoc():
            return describe(location.location)
        case CallSiteLoc():
            return describe(location.callee) or describe(location.caller)
        case FusedLoc():
            for inner in location.locations.data:  # type: ignore[attr-defined]
                where = describe(inner)
                if where is not None:
                    return where
    return None


def where(op: Operation) -> str | None:
    """`file:line:column` of `op`, or of the nearest op around it that has one."""
    current: Operation | None = op
    while current is not None:
        found = describe(current.location)
        if found is not None:
            return found
        current = current.parent_op()
    return None


def located(op: Operation, message: str) -> str:
    """`message` prefixed with the source location of `op`, when it has one."""
    found = where(op)
    return message if found is None else f"{found}: {message}"


def verify(module: Operation) -> None:
    """`module.verify()`; an op that fails has its source location and name in front
    of the verifier's message (the first failing op, innermost first)."""
    try:
        module.verify()
    except DiagnosticException as error:
        for op in module.walk(region_first=True):
            try:
                op.verify(verify_nested_ops=False)
            except DiagnosticException as inner:
                message = str(inner) if op.name in str(inner) else f"'{op.name}': {inner}"
                raise VerifyException(located(op, message)) from error
        raise
