"""The `pullback` command: `pullback demo`, `pullback opt FILE -p PASSES`,
`pullback export FILE.py:VAR -o DIR`."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pullback
from pullback.cli_files import CommandError
from pullback.cli_opt import add_opt_command
from pullback.demo import DemoUnavailable
from pullback.demo import run as demo_run

T = TypeVar("T")


def _user_code(file: str, what: str, run: Callable[[], T]) -> T:
    """`run()`, which runs code of the user's `file`; its exceptions become a
    `CommandError` naming the exception and the innermost line of `file` it passed."""
    try:
        return run()
    except SyntaxError as e:
        raise CommandError(f"{e.filename}:{e.lineno}: {e.msg}") from None
    except Exception as e:
        own = os.path.realpath(file)
        lines = [f for f in traceback.extract_tb(e.__traceback__)
                 if os.path.realpath(f.filename) == own]
        where = f" at {file}:{lines[-1].lineno}" if lines else ""
        raise CommandError(f"{what} raised {type(e).__name__}{where}: {e}") from None


def _export(args: argparse.Namespace) -> int:
    import runpy

    from pullback.compiler.export.toolchain import ToolchainError
    from pullback.library_export import export

    file, sep, var = args.source.rpartition(":")
    if not sep or not file or not var:
        raise CommandError(f"expected FILE.py:VAR, got {args.source!r}", 2)
    if not Path(file).is_file():
        raise CommandError(f"no file {file!r}", 2)
    if not os.access(file, os.R_OK):
        raise CommandError(f"cannot read {file!r}: permission denied", 2)
    namespace = _user_code(file, f"running {file}",
                           lambda: runpy.run_path(file, run_name="__pullback_export__"))
    if var not in namespace:
        names = ", ".join(k for k in namespace if not k.startswith("_"))
        raise CommandError(f"{file} defines no {var!r} (it defines: {names})", 2)
    entries = namespace[var]
    if callable(entries) and not isinstance(entries, dict):
        entries = _user_code(file, f"{file}:{var}()", entries)
    if not isinstance(entries, dict):
        raise CommandError(f"{file}:{var} must be a dict of entry name -> pb.compile(...) "
                           f"object, or a function returning one; got {type(entries).__name__}",
                           2)
    name = args.name or Path(file).stem
    try:
        lib = export(args.output, name, entries, target=args.target)
    except (ValueError, TypeError, ToolchainError) as e:
        raise CommandError(str(e)) from None
    except OSError as e:
        raise CommandError(f"cannot write {e.filename or args.output!r}: {e.strerror}") from None
    for path in (lib.shared_library, lib.header, lib.manifest, lib.loader, lib.captured_values):
        if path is not None:
            print(path)
    return 0


_DEMO_OPTIONS = [("epochs", int, "passes over the training set"),
                 ("batch", int, "images per training step"),
                 ("width", int, "units per hidden layer"),
                 ("seed", int, "seed of the initial weights and of the batches"),
                 ("lr", float, "Adam learning rate")]


def _demo(args: argparse.Namespace) -> int:
    try:
        demo_run(device=args.device, **{name: getattr(args, name) for name, _, _ in _DEMO_OPTIONS})
    except (DemoUnavailable, ValueError) as e:
        raise CommandError(str(e)) from None
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pullback", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pullback {pullback.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_opt_command(sub)
    demo = sub.add_parser(
        "demo", help="train a digit classifier with compiled, eagerly updated, checkpointed steps",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = {name: p.default for name, p in inspect.signature(demo_run).parameters.items()}
    demo.add_argument("--device", default=None,
                      help="cpu or opencl; None: $PULLBACK_DEVICE, else cpu")
    for name, kind, text in _DEMO_OPTIONS:
        demo.add_argument(f"--{name}", type=kind, default=defaults[name], help=text)
    demo.set_defaults(run=_demo)
    exp = sub.add_parser(
        "export", help="write a kernel library (shared library, C header, manifest, loader)")
    exp.add_argument("source", metavar="FILE.py:VAR",
                     help="a Python file and the name of a dict of entry name -> "
                          "pb.compile(...) object in it (or of a function returning one)")
    exp.add_argument("-o", "--output", required=True, help="the folder to write")
    exp.add_argument("--name", default=None, help="the library name (default: FILE's name)")
    exp.add_argument("--target", default="host",
                     help='"host", or a portable level such as "x86-64-v2" or "x86-64-v3"')
    exp.set_defaults(run=_export)
    return parser


def _quiet_closed_stdout() -> int:
    """After standard output's reader went away (`pullback opt f.mlir | head -1`):
    point stdout at /dev/null so that flushing at exit fails no more, and exit 1."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run the `pullback` command with `argv` (default: `sys.argv[1:]`); the exit status."""
    args = _parser().parse_args(argv)
    try:
        status = args.run(args)
        sys.stdout.flush()
    except CommandError as e:
        print(f"pullback {args.command}: {e}", file=sys.stderr)
        return e.status
    except BrokenPipeError:
        return _quiet_closed_stdout()
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
