"""The `pullback` command: `pullback demo`, `pullback opt FILE -p PASSES`."""

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
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
