"""The C compiler and linker that build exported libraries and the programs that use them.

The compiler is `$CC` when set, else the first of `cc`, `gcc`, `clang` on PATH, else
the Zig toolchain from the `ziglang` package (`pip install "pullback[export]"`), so
that export works on a machine with nothing but pip.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

SYSTEM_COMPILERS = ("cc", "gcc", "clang")
"""The compilers looked for on PATH, in order, when `$CC` is not set."""


class ToolchainError(RuntimeError):
    """No C compiler was found, or compiling or linking failed."""


def find_c_compiler() -> list[str]:
    """The command prefix that runs a C compiler and linker.

    Raises:
        ToolchainError: when `$CC` names a missing program, or nothing was found.
    """
    cc = os.environ.get("CC", "").strip()
    if cc:
        command = shlex.split(cc)
        if shutil.which(command[0]) is None:
            raise ToolchainError(f"CC={cc!r} names {command[0]!r}, which is not an "
                                 "executable file or a program on PATH; fix CC or unset it")
        return command
    for name in SYSTEM_COMPILERS:
        path = shutil.which(name)
        if path is not None:
            return [path]
    if importlib.util.find_spec("ziglang") is not None:
        return [sys.executable, "-m", "ziglang", "cc"]
    raise ToolchainError(
        "no C compiler found: CC is not set, none of "
        f"{', '.join(SYSTEM_COMPILERS)} is on PATH ({os.environ.get('PATH', '')!r}), and "
        f"the ziglang package is not installed in this Python ({sys.executable}). Install "
        "one: `pip install \"pullback[export]\"` (a C compiler from PyPI), or install gcc "
        "or clang with the system's package manager, or set CC to a C compiler command.")


def build_shared_library(output: Path, c_sources: Sequence[Path], objects: Sequence[Path], *,
                         libraries: Sequence[str] = ("m",), flags: Sequence[str] = (),
                         exported_prefix: str | None = None) -> None:
    """Compile `c_sources` and link them with `objects` into the shared library `output`.

    Symbols are hidden unless the C source marks them visible; unreferenced sections
    are dropped. With `exported_prefix`, a version script also keeps every global
    symbol not starting with it out of the dynamic symbol table, whatever its
    visibility in the objects.

    Raises:
        ToolchainError: with the command line and the compiler's messages on failure.
    """
    cc = find_c_compiler()
    with tempfile.TemporaryDirectory(prefix="pullback-link-") as tmp:
        link = _link_flags()
        if exported_prefix is not None:
            script = Path(tmp) / "exports.map"
            script.write_text(f"{{\n  global: {exported_prefix}*;\n  local: *;\n}};\n")
            link.append(f"-Wl,--version-script={script}")
        command = [*cc, "-shared", "-fPIC", "-O2", "-fvisibility=hidden",
                   "-ffunction-sections", "-fdata-sections", *flags,
                   "-o", str(output), *map(str, c_sources), *map(str, objects),
                   *link, *(f"-l{lib}" for lib in libraries)]
        _run(command)


def build_executable(output: Path, c_sources: Sequence[Path], *,
                     include_dirs: Sequence[Path] = (), library_dirs: Sequence[Path] = (),
                     libraries: Sequence[str] = (), flags: Sequence[str] = ()) -> None:
    """Compile and link the C program `output`, finding its shared libraries at run time.

    Each library directory is also written into the program's run path, so the
    program runs without `LD_LIBRARY_PATH`.

    Raises:
        ToolchainError: with the command line and the compiler's messages on failure.
    """
    cc = find_c_compiler()
    dirs = [str(Path(d).resolve()) for d in library_dirs]
    command = [*cc, "-O2", *flags, *(f"-I{d}" for d in include_dirs),
               "-o", str(output), *map(str, c_sources),
               *(f"-L{d}" for d in dirs), *(f"-Wl,-rpath,{d}" for d in dirs),
               *(f"-l{lib}" for lib in libraries)]
    _run(command)


def _link_flags() -> list[str]:
    """Linker options for a lean shared library on this platform."""
    if sys.platform == "darwin":
        return ["-Wl,-dead_strip"]
    return ["-Wl,--gc-sections", "-Wl,--as-needed", "-Wl,-z,noexecstack"]


def _run(command: list[str]) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as e:
        raise ToolchainError(f"cannot run the C compiler: {e}\ncommand: "
                             f"{shlex.join(command)}") from e
    if done.returncode != 0:
        raise ToolchainError(
            f"the C compiler failed (exit status {done.returncode})\ncommand: "
            f"{shlex.join(command)}\n{(done.stderr or done.stdout).strip()}")
