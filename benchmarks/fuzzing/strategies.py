"""Hypothesis strategies for random DSL programs: every choice of the generator is a
hypothesis draw, so a failing program shrinks to fewer ops, simpler shapes and
earlier op families."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from benchmarks.fuzzing.programs import Program, generate


class DataChooser:
    """A `Chooser` that draws every integer from hypothesis."""

    def __init__(self, draw: Any):
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))


@st.composite
def programs(draw: Any, min_ops: int = 1, max_ops: int = 60) -> Program:
    """A program of `min_ops` to `max_ops` generated steps."""
    ops = draw(st.integers(min_ops, max_ops))
    return generate(DataChooser(draw), ops)
