"""`PULLBACK_PRINT_IR`: which stages a compile prints to standard error.

Accepted values, comma-separated: `after-all` (every stage, from the traced module to
the last pass, then the generated code), `before=PASS` and `after=PASS` (the module
before / after every run of the registered pass PASS). Anything else is refused with
a message saying what is accepted. Printing compiles afresh (no disk cache).
"""

from __future__ import annotations

import dataclasses
import os

from pullback.compiler.passes import pass_names

VARIABLE = "PULLBACK_PRINT_IR"


@dataclasses.dataclass(frozen=True)
class PrintIR:
    """What to print: every stage, or before / after the named passes."""

    after_all: bool = False
    before_passes: frozenset[str] = frozenset()
    after_passes: frozenset[str] = frozenset()

    def before(self, key: str) -> bool:
        """Whether to print the module before the pass of stage `key` (`name` or `name#k`)."""
        return key.partition("#")[0] in self.before_passes

    def after(self, key: str) -> bool:
        """Whether to print the module after stage `key` (`trace` is the traced module)."""
        return self.after_all or key.partition("#")[0] in self.after_passes


def parse_print_ir(value: str) -> PrintIR | None:
    """The request `value` spells (None for the empty string); raises a ValueError
    listing what is accepted."""
    if not value:
        return None
    after_all = False
    chosen: dict[str, set[str]] = {"before": set(), "after": set()}
    for item in (v.strip() for v in value.split(",")):
        when, eq, name = item.partition("=")
        if item == "after-all":
            after_all = True
        elif eq and when in chosen and name in pass_names():
            chosen[when].add(name)
        else:
            raise ValueError(
                f"{VARIABLE}={value!r}: cannot read {item!r}; accepted: 'after-all', "
                f"'before=PASS' and 'after=PASS', comma-separated, where PASS is a registered "
                f"pass ({', '.join(pass_names())})")
    return PrintIR(after_all, frozenset(chosen["before"]), frozenset(chosen["after"]))


def print_ir_request() -> PrintIR | None:
    """What `PULLBACK_PRINT_IR` asks to print now (None: nothing)."""
    return parse_print_ir(os.environ.get(VARIABLE, ""))
