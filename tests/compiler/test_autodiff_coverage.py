"""Every `array` op has a VJP rule, a JVP rule, an interpreter entry and a table row."""

from __future__ import annotations

from op_table import TABLE

from pullback.compiler.autodiff.rules import JVP_RULES, VJP_RULES
from pullback.compiler.dialects.array import Array, AssignOp
from pullback.compiler.interpreter import IMPLS


def test_every_op_is_covered() -> None:
    rows = {row.op for row in TABLE}
    missing = [
        f"{op.name}: {what}"
        for op in Array.operations
        if op is not AssignOp  # no result: tests/runtime/test_in_place.py
        for what, table in (("VJP rule", VJP_RULES), ("JVP rule", JVP_RULES),
                            ("interpreter impl", IMPLS), ("op table row", rows))
        if op not in table
    ]
    assert not missing, "missing:\n" + "\n".join(missing)
