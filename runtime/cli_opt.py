"""`pullback opt FILE -p PASSES`: parse MLIR text, verify it, run registered passes
(verifying after each), print the stages asked for and write the result."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from pullback.cli_files import CommandError, read_text, write_text
from pullback.cli_load import hint, load_modules

if TYPE_CHECKING:
    from xdsl.context import Context
    from xdsl.dialects.builtin import ModuleOp

VERIFY_HELP = "verify the input and the IR after each pass (the default; --no-verify skips)"


def add_opt_command(sub: argparse._SubParsersAction) -> None:
    """The `opt` subcommand and its options."""
    opt = sub.add_parser(
        "opt", help="run named passes on an MLIR file and print the result",
        description="Parse MLIR text, run a pipeline of registered passes over it and print "
                    "the result, like mlir-opt. Errors exit with status 1 (2 for an "
                    "unreadable file or bad usage).")
    opt.add_argument("file", nargs="?", help="MLIR text file, or - for standard input")
    opt.add_argument("-p", "--passes", default="",
                     help='pass pipeline, e.g. "autodiff{func=f},simplify,cse"')
    opt.add_argument("-o", "--output", default="-",
                     help="file to write the result to (default: - for standard output)")
    opt.add_argument("--load", action="append", default=[], metavar="MODULE",
                     help="import MODULE (a dotted module name, or a path to a .py file) "
                          "first, so the ops and passes it registers with register_op / "
                          "register_pass can be parsed and run (repeatable)")
    opt.add_argument("--list-passes", action="store_true",
                     help="list the registered passes and their options")
    opt.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                     help=VERIFY_HELP)
    opt.add_argument("--locations", action="store_true",
                     help="print each op's source location as loc(...)")
    opt.add_argument("--print-ir-before", action="append", default=[], metavar="PASS",
                     help="print the IR to standard error before PASS (repeatable, or a "
                          "comma list)")
    opt.add_argument("--print-ir-after", action="append", default=[], metavar="PASS",
                     help="print the IR to standard error after PASS (repeatable, or a "
                          "comma list)")
    opt.add_argument("--print-ir-before-all", action="store_true",
                     help="print the IR to standard error before every pass")
    opt.add_argument("--print-ir-after-all", action="store_true",
                     help="print the IR to standard error after every pass")
    opt.set_defaults(run=run_opt)


def _list_passes() -> int:
    """One line per registered pass: its name, then its options (`name: type = default`)."""
    from pullback.compiler.pass_spec import pass_options
    from pullback.compiler.passes import get_pass, pass_names

    width = max(map(len, pass_names())) + 2
    for name in pass_names():
        options = ", ".join(str(o) for o in pass_options(get_pass(name)))
        print(f"{name:<{width}}{options}".rstrip())
    return 0


def _dump_names(values: list[str], flag: str, pipeline_names: list[str]) -> frozenset[str]:
    """The pass names given to a `--print-ir-*` flag; each must be in the pipeline."""
    from pullback.compiler.pass_spec import unknown_pass_message
    from pullback.compiler.passes import pass_names

    names = frozenset(n.strip() for v in values for n in v.split(",") if n.strip())
    for name in sorted(names):
        if name not in pass_names():
            raise CommandError(f"{flag}: {unknown_pass_message(name, pass_names())}", 2)
        if name not in pipeline_names:
            listed = ", ".join(pipeline_names) or "no passes"
            raise CommandError(f"{flag}: pass '{name}' is not in the pipeline ({listed})", 2)
    return names


def _verify(module: ModuleOp, where: str) -> None:
    """Verify `module`; a failure names the first op that does not verify (and its
    source location, when it has one)."""
    from xdsl.utils.exceptions import DiagnosticException

    from pullback.compiler.diagnostics import verify

    try:
        verify(module)
    except (DiagnosticException, ValueError) as e:
        raise CommandError(f"{where} does not verify: {str(e).strip()}") from None


def _parse(text: str, name: str) -> tuple[Context, ModuleOp]:
    """The module `text` spells; a parse error names `name:line:column` and shows the
    line with a caret under the place."""
    from xdsl.parser import Parser
    from xdsl.utils.exceptions import ParseError

    from pullback.compiler.context import make_context

    ctx = make_context()
    try:
        return ctx, Parser(ctx, text, name).parse_module()
    except ParseError as e:
        where = e.span.get_location()
        context = e.span.print_with_context().rstrip("\n").split("\n")[1:]
        message = hint(e.msg, ctx.registered_dialect_names)
        raise CommandError("\n".join([f"{where}: {message}", *context])) from None


def _pass_failure(pass_name: str, error: Exception) -> str:
    """`pass 'x' failed: message`, with the exception's type unless it is one a pass
    raises for input it refuses."""
    from xdsl.utils.exceptions import DiagnosticException

    expected = (ValueError, TypeError, NotImplementedError, DiagnosticException)
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    kind = "" if isinstance(error, expected) else f"{type(error).__name__}: "
    return f"pass '{pass_name}' failed: {kind}{text.strip()}"


def _debugging() -> bool:
    return os.environ.get("PULLBACK_DEBUG", "") not in ("", "0")


def _run_opt(args: argparse.Namespace, name: str) -> int:
    from xdsl.passes import PassPipeline

    from pullback.compiler.ir_dump import IRDumps, PassTracker, module_text
    from pullback.compiler.pass_spec import PipelineTextError, parse_checked_pipeline

    try:
        passes = parse_checked_pipeline(args.passes).passes
    except PipelineTextError as e:
        raise CommandError(f"{name}: {hint(str(e))}") from None
    names = [p.name for p in passes]
    dumps = IRDumps(before=_dump_names(args.print_ir_before, "--print-ir-before", names),
                    after=_dump_names(args.print_ir_after, "--print-ir-after", names),
                    before_all=args.print_ir_before_all, after_all=args.print_ir_after_all,
                    locations=args.locations)
    ctx, module = _parse(read_text(args.file), name)
    if args.verify:
        _verify(module, f"{name}: the input")
    def check(done: str, m: ModuleOp) -> None:
        _verify(m, f"{name}: the IR after pass '{done}'")

    tracker = PassTracker(dumps, sys.stderr, check if args.verify else None)
    try:
        PassPipeline(passes, tracker).apply(ctx, module)
    except (CommandError, BrokenPipeError):
        raise
    except Exception as e:
        if _debugging() or tracker.running is None:
            raise
        raise CommandError(f"{name}: {_pass_failure(tracker.running, e)}") from None
    write_text(args.output, module_text(module, args.locations) + "\n")
    return 0


def run_opt(args: argparse.Namespace) -> int:
    """`pullback opt`; failures raise `CommandError`: `FILE: message` with status 1, or
    status 2 for an unreadable file or a missing argument."""
    load_modules(args.load)
    if args.list_passes:
        return _list_passes()
    if args.file is None:
        raise CommandError("give an MLIR file (or - for standard input)", 2)
    return _run_opt(args, "<stdin>" if args.file == "-" else args.file)
