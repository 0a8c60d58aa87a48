"""Undo journals: what a call may change in place, copied first, put back if it fails.

A compiled call is all or nothing: it completes, or it raises with every array it
writes exactly as before the call. Native code cannot fail between two host calls and
returns at the first host call that fails, so only two kinds of writes can be left
half done: the in-place writes of inputs made before the last host call (an
executable's `undo_inputs`; an OpenCL schedule driven from Python may stop between any
two launches, so there every written input), and the arrays a Python function
changed from a host call (an `eager_update` function's model and optimiser state).
The runtime opens a journal around a call that has host calls or `undo_inputs`, with
copies of those inputs (`all_or_nothing`); a host function about to change arrays
records them in the current journal first (`save`). When the call raises, every
recorded array gets its old bytes back, newest record first, and the exception
propagates. A call without host calls on the CPU needs no journal and gets none.

Journals are per thread and nest: a compiled call made from a host function (a hook
that itself runs compiled code) has its own. What a host function does besides an
`eager_update` (printing, changing other objects, calling other compiled functions
that succeed) is not undone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np

_STATE = threading.local()


class Journal:
    """Copies of arrays taken before they were changed, to put back on failure."""

    def __init__(self) -> None:
        self._saved: list[tuple[np.ndarray, np.ndarray]] = []

    def save(self, arrays: Iterable[np.ndarray]) -> None:
        """Copy each of `arrays` as it is now."""
        self._saved += [(a, a.copy()) for a in arrays if isinstance(a, np.ndarray) and a.nbytes]

    def restore(self) -> None:
        """Put every saved array back; an array saved twice ends as at its first save."""
        for array, old in reversed(self._saved):
            np.copyto(array, old)
        self._saved.clear()


def _journals() -> list[Journal]:
    stack = getattr(_STATE, "journals", None)
    if stack is None:
        stack = _STATE.journals = []
    return stack


@contextmanager
def all_or_nothing(arrays: Iterable[np.ndarray] = ()) -> Iterator[Journal]:
    """A journal holding copies of `arrays` for the block it guards: if the block raises,
    they and every array `save`d meanwhile on this thread get their old bytes back."""
    journal = Journal()
    journal.save(arrays)
    stack = _journals()
    stack.append(journal)
    try:
        yield journal
    except BaseException:
        journal.restore()
        raise
    finally:
        stack.pop()


def save(arrays: Iterable[np.ndarray]) -> None:
    """Record `arrays`, about to be changed in place, in this thread's current journal
    (nothing outside `all_or_nothing`)."""
    stack = _journals()
    if stack:
        stack[-1].save(arrays)
