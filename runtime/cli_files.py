"""Reading and writing the files the `pullback` command is given, with failures as
`CommandError`s (a one-line message and an exit status) instead of tracebacks."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


class CommandError(Exception):
    """A failure the command reports as `pullback <command>: <message>`, exiting with
    `status` (2: bad usage or unreadable input; 1: the input was read but failed)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def read_text(path: str) -> str:
    """The text of `path` ("-": standard input)."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CommandError(f"no file '{path}'", 2) from None
    except IsADirectoryError:
        raise CommandError(f"'{path}' is a folder, not a file", 2) from None
    except UnicodeDecodeError as e:
        raise CommandError(f"'{path}' is not UTF-8 text (byte {e.start})", 2) from None
    except OSError as e:
        raise CommandError(f"cannot read '{path}': {e.strerror}", 2) from None


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text(path: str, text: str) -> None:
    """Write `text` to `path` ("-": standard output) all at once: a temporary file next
    to it, renamed over it when complete, so a failure leaves no partial file."""
    if path == "-":
        sys.stdout.write(text)
        return
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise CommandError(f"cannot write '{path}': no folder '{folder}'", 2)
    try:
        mode = target.stat().st_mode & 0o7777 if target.exists() else _new_file_mode()
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as e:
        raise CommandError(f"cannot write '{path}': {e.strerror}", 2) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException as e:
        os.unlink(temporary)
        if isinstance(e, OSError):
            raise CommandError(f"cannot write '{path}': {e.strerror}", 1) from None
        raise
