"""Choosing the C compiler a test builds with: the system's, or the ziglang fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

COMPILERS = ["system", "ziglang"]
"""The kinds of C compiler `find_c_compiler` can return without `$CC`."""


def use_compiler(monkeypatch: pytest.MonkeyPatch, empty_dir: Path, kind: str) -> None:
    """Make `find_c_compiler` return the `kind` compiler for the rest of the test.

    "ziglang" empties PATH (pointing it at `empty_dir`), so no system compiler is
    found and the ziglang package is used.
    """
    monkeypatch.delenv("CC", raising=False)
    if kind == "ziglang":
        monkeypatch.setenv("PATH", str(empty_dir))
