"""`pullback opt --load MODULE`: import the user's modules before anything is parsed, so
the ops and passes they register (`register_op`, `register_pass`) can be named.

MODULE is a dotted module name (imported as `import` would, from the current folder
or the installed packages) or the path of a `.py` file. A failure is a one-line
`CommandError` with status 2 that says which module and why, never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from pullback.cli_files import CommandError


def load_modules(names: list[str]) -> None:
    """Import each of `names` in order (see the module docstring)."""
    for name in names:
        if _is_path(name):
            _load_file(name)
        else:
            _import(name)


def hint(message: str, dialects: Iterable[str] = ()) -> str:
    """`message` about an unknown op or pass, with how to name one registered from outside
    pullback (not for an unknown op of one of `dialects`, those the parser has)."""
    op = re.match(r"Operation ([\w.$-]+) is not registered", message)
    if op is not None and op.group(1).split(".")[0] not in set(dialects):
        return f"{message} (an op registered from outside pullback needs --load MODULE)"
    if "unknown pass" in message:  # before the list of passes that ends the message
        head, sep, listed = message.partition("; registered passes: ")
        return f"{head} (a pass registered from outside pullback needs --load MODULE){sep}{listed}"
    return message


def _is_path(name: str) -> bool:
    return name.endswith(".py") or "/" in name or os.sep in name


def _import(name: str) -> ModuleType:
    if not all(part.isidentifier() for part in name.split(".")):
        raise CommandError(f"--load {name}: not a module name (a.b.c) or a path to a .py "
                           "file", 2)
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:  # as `python -m`, the current folder's modules can be loaded
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            raise CommandError(f"--load {name}: no module named '{e.name}' (give a module "
                               "importable from the current folder or the installed "
                               "packages, or a path to a .py file)", 2) from None
        raise _failed(name, _origin(name), e) from None
    except Exception as e:
        raise _failed(name, _origin(name), e) from None
    finally:
        if added:
            sys.path.remove(cwd)


def _origin(name: str) -> str | None:
    """The file module `name` would be imported from, when that can be found."""
    try:
        spec = importlib.util.find_spec(name)
    except Exception:  # a parent package that itself fails to import
        return None
    return None if spec is None else spec.origin


def _load_file(path: str) -> ModuleType:
    file = Path(path)
    if not file.is_file():
        what = "a folder, not a file" if file.is_dir() else "no such file"
        raise CommandError(f"--load {path}: {what}", 2)
    if file.suffix != ".py":
        raise CommandError(f"--load {path}: not a .py file", 2)
    name, n = f"_pullback_load_{file.stem}", 0
    while name in sys.modules:  # a name no module has
        n += 1
        name = f"_pullback_load_{file.stem}_{n}"
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # classes it defines look their module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise _failed(path, str(file), e) from None
    return module


def _failed(name: str, origin: str | None, error: Exception) -> CommandError:
    """`--load NAME: importing it raised KIND at FILE:LINE: message` (the innermost line
    of the module's own file the error passed through, when it did)."""
    if isinstance(error, SyntaxError):
        return CommandError(f"--load {name}: {error.filename}:{error.lineno}: {error.msg}", 2)
    where = ""
    if origin is not None:
        own = os.path.realpath(origin)
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if os.path.realpath(f.filename) == own]
        if frames:
            where = f" at {origin}:{frames[-1].lineno}"
    message = " ".join(str(error).split())
    return CommandError(f"--load {name}: importing it raised {type(error).__name__}{where}"
                        f"{': ' + message if message else ''}", 2)
