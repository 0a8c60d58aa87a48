"""The `pullback` command: `pullback demo`, `pullback opt FILE -p PASSES`,
`pullback export FILE.py:VAR -o DIR`."""

from __future__ import annotations

import argparse
import inspect
import sys

from pullback.compiler.passes import PASSES
from pullback.demo import DemoUnavailable
from pullback.demo import run as demo_run


def _opt(args: argparse.Namespace) -> int:
    from xdsl.parser import Parser
    from xdsl.utils.exceptions import ParseError, VerifyException

    from pullback.compiler.context import make_context
    from pullback.compiler.passes import parse_pipeline

    if args.list_passes:
        for name in PASSES:
            print(name)
        return 0
    if args.file is None:
        print("pullback opt: give an MLIR file (or - for standard input)", file=sys.stderr)
        return 2
    text = sys.stdin.read() if args.file == "-" else open(args.file).read()
    ctx = make_context()
    try:
        module = Parser(ctx, text, args.file).parse_module()
        if args.passes:
            parse_pipeline(args.passes).apply(ctx, module)
        if args.verify:
            module.verify()
    except (ParseError, VerifyException, KeyError, ValueError) as e:
        print(f"pullback opt: {e}", file=sys.stderr)
        return 1
    print(module)
    return 0


def _export(args: argparse.Namespace) -> int:
    import runpy
    from pathlib import Path

    from pullback.compiler.export.toolchain import ToolchainError
    from pullback.library_export import export

    file, sep, var = args.source.rpartition(":")
    if not sep or not file or not var:
        print(f"pullback export: expected FILE.py:VAR, got {args.source!r}", file=sys.stderr)
        return 2
    if not Path(file).is_file():
        print(f"pullback export: no file {file!r}", file=sys.stderr)
        return 2
    namespace = runpy.run_path(file, run_name="__pullback_export__")
    if var not in namespace:
        names = ", ".join(k for k in namespace if not k.startswith("_"))
        print(f"pullback export: {file} defines no {var!r} (it defines: {names})",
              file=sys.stderr)
        return 2
    entries = namespace[var]
    if callable(entries) and not isinstance(entries, dict):
        entries = entries()
    if not isinstance(entries, dict):
        print(f"pullback export: {file}:{var} must be a dict of entry name -> pb.compile(...) "
              f"object, or a function returning one; got {type(entries).__name__}",
              file=sys.stderr)
        return 2
    name = args.name or Path(file).stem
    try:
        lib = export(args.output, name, entries, target=args.target)
    except (ValueError, TypeError, ToolchainError) as e:
        print(f"pullback export: {e}", file=sys.stderr)
        return 1
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
        print(f"pullback demo: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pullback", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    opt = sub.add_parser("opt", help="run named passes on an MLIR file and print the result")
    opt.add_argument("file", nargs="?", help="MLIR text file, or - for standard input")
    opt.add_argument("-p", "--passes", default="", help="comma-separated pass pipeline")
    opt.add_argument("--list-passes", action="store_true", help="list the registered passes")
    opt.add_argument("--verify", action="store_true", help="verify the module after the passes")
    opt.set_defaults(run=_opt)
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
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
