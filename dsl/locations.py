"""Where the user's code is: the innermost frame outside pullback, as an MLIR location.

Every op the tracer records carries the `file:line:column` of the user's expression
that made it (`builtin.FileLineColLoc`), so the IR, its verifier and the lowerings can
point back at the source. Finding it runs once per traced op, so both steps are
cached: whether a file is pullback's own (or numpy's: a numpy function that dispatches
to pullback is not the user's line) per file name, and the location attribute per
code object and instruction.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from types import CodeType, FrameType

from xdsl.dialects.builtin import UNKNOWN_LOC, FileLineColLoc, IntAttr, LocationAttr, StringAttr


def _package_roots() -> tuple[str, ...]:
    """The folders of pullback's three packages, wherever they are installed."""
    roots = []
    for name in ("pullback", "pullback.dsl", "pullback.compiler"):
        spec = importlib.util.find_spec(name)
        roots += [os.path.abspath(p) + os.sep for p in spec.submodule_search_locations or ()]
    return tuple(roots)


_ROOTS = _package_roots()
_FOREIGN = (os.sep + "numpy" + os.sep, "<__array_function__", "contextlib.py")
_internal: dict[str, bool] = {}
"""Per file name: whether its frames are pullback's (or numpy's) rather than the user's."""
_locations: dict[tuple[int, int], tuple[CodeType, LocationAttr]] = {}
"""Per code object (by id) and instruction offset: the code object and its location."""
_LIMIT = 1 << 16
"""Entries `_locations` holds before it starts over (it keeps code objects alive)."""


def is_internal(filename: str) -> bool:
    """Whether code in `filename` is pullback's own or numpy's, not the user's."""
    known = _internal.get(filename)
    if known is None:
        path = os.path.abspath(filename)
        known = path.startswith(_ROOTS) or any(s in filename for s in _FOREIGN)
        _internal[filename] = known
    return known


def user_frame(depth: int = 1) -> FrameType | None:
    """The innermost frame outside pullback and numpy, starting `depth` frames above
    the caller's; None when every frame is internal."""
    frame: FrameType | None = sys._getframe(depth + 1)
    internal = _internal
    while frame is not None:
        filename = frame.f_code.co_filename
        known = internal.get(filename)
        if known is False or (known is None and not is_internal(filename)):
            return frame
        frame = frame.f_back
    return None


def here() -> LocationAttr:
    """The user's current `file:line:column` (1-based column of the expression being
    evaluated), or the unknown location when no frame is the user's. Called by
    pullback's own code, whose frame is skipped unread (each frame read costs)."""
    frame = user_frame(2)
    if frame is None:
        return UNKNOWN_LOC
    code = frame.f_code
    key = (id(code), frame.f_lasti)  # a code object hashes its whole body
    found = _locations.get(key)
    if found is None:
        found = (code, _location_of(frame))  # holding `code` keeps its id unique
        if len(_locations) >= _LIMIT:
            _locations.clear()
        _locations[key] = found
    return found[1]


def _location_of(frame: FrameType) -> FileLineColLoc:
    code = frame.f_code
    line = frame.f_lineno or code.co_firstlineno
    column = 0
    if frame.f_lasti >= 0:
        position = next(itertools.islice(code.co_positions(), frame.f_lasti // 2, None), None)
        if position is not None and position[0] == line and position[2] is not None:
            column = position[2]
    return FileLineColLoc(StringAttr(code.co_filename), IntAttr(line), IntAttr(column + 1))
