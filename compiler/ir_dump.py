"""Printing a module between passes, in MLIR's `// -----// IR Dump After <pass> //----- //`
style: which passes to print before or after, and the xDSL pipeline callback that does it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.printer import Printer


def module_text(module: ModuleOp, locations: bool = False) -> str:
    """`module` as MLIR text; `locations` adds each op's `loc(...)`."""
    if not locations:
        return str(module)
    from io import StringIO

    out = StringIO()
    Printer(stream=out, print_debuginfo=True).print_op(module)
    return out.getvalue()


def dump_header(when: str, pass_name: str) -> str:
    """`// -----// IR Dump After cse //----- //` (`when` is "Before" or "After")."""
    return f"// -----// IR Dump {when} {pass_name} //----- //"


@dataclass(frozen=True)
class IRDumps:
    """Which stages to print: before or after the named passes, or around all of them."""

    before: frozenset[str] = frozenset()
    after: frozenset[str] = frozenset()
    before_all: bool = False
    after_all: bool = False
    locations: bool = False

    def wanted(self, when: str, pass_name: str) -> bool:
        """Whether to print the module `when` ("Before"/"After") pass `pass_name`."""
        if when == "Before":
            return self.before_all or pass_name in self.before
        return self.after_all or pass_name in self.after

    def print(self, when: str, pass_name: str, module: ModuleOp, stream: TextIO) -> None:
        """Print `module` with its header to `stream` if asked for."""
        if self.wanted(when, pass_name):
            stream.write(f"{dump_header(when, pass_name)}\n"
                         f"{module_text(module, self.locations)}\n\n")
            stream.flush()


@dataclass
class PassTracker:
    """A `PassPipeline` callback that prints the asked-for dumps, runs `check(pass_name,
    module)` after each pass, and remembers which pass runs (to name it in errors)."""

    dumps: IRDumps
    stream: TextIO
    check: Callable[[str, ModuleOp], None] | None = None
    running: str | None = field(default=None, init=False)

    def __call__(self, done: ModulePass | None, module: ModuleOp,
                 upcoming: ModulePass | None) -> None:
        if done is not None:
            self.dumps.print("After", done.name, module, self.stream)
            if self.check is not None:
                self.check(done.name, module)
        self.running = None if upcoming is None else upcoming.name
        if upcoming is not None:
            self.dumps.print("Before", upcoming.name, module, self.stream)
