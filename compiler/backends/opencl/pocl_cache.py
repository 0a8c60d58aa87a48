"""PoCL's own kernel cache: off, and inside pullback's cache folder.

PoCL keeps compiled kernels in a cache of its own, keyed by the program, and reuses
an entry without checking it: a truncated kernel library left there (by a crash, a
full disk, a damaged file) crashes every later build of that program, and the
binary pullback stores after such a build carries the damage on. pullback turns
that cache off (`POCL_KERNEL_CACHE=0`: PoCL neither reads nor keeps entries across
processes) and points PoCL's working folder at `$PULLBACK_CACHE_DIR/pocl`. Nothing
is lost: pullback's own checked entries hold the whole device binary (kernel
libraries included), and loading one costs what a PoCL cache hit costs.

With pullback's disk caches off (`PULLBACK_CACHE_DIR=` empty, `pb.set_disk_cache(False)`)
PoCL keeps its own working folder. Both variables are set only where the user has
not set them, and only take effect
when set before the OpenCL platform is first initialised: `devices.cl()` calls
`isolate()` before it imports pyopencl.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from pullback.compiler.backends import disk_cache

STALE_SECONDS = 3600.0
"""Age after which an empty leftover `tempfile_*` of PoCL's is deleted."""

_done = False


def pocl_dir() -> Path:
    """PoCL's working folder when pullback chooses it."""
    return disk_cache.cache_root() / "pocl"


def isolate() -> None:
    """Set `POCL_KERNEL_CACHE=0` and `POCL_CACHE_DIR` unless the user set them (once)."""
    global _done
    if _done:
        return
    _done = True
    os.environ.setdefault("POCL_KERNEL_CACHE", "0")
    if os.environ.get("POCL_CACHE_DIR") or not disk_cache.enabled():
        return
    folder = pocl_dir()
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        _sweep(folder)
    os.environ["POCL_CACHE_DIR"] = str(folder)


def _sweep(folder: Path) -> None:
    """Delete PoCL's empty `tempfile_*` leftovers older than `STALE_SECONDS` (PoCL
    leaves one per build and never deletes them)."""
    cutoff = time.time() - STALE_SECONDS
    for path in folder.glob("tempfile_*"):
        with contextlib.suppress(OSError):
            st = path.stat()
            if st.st_size == 0 and st.st_mtime < cutoff:
                path.unlink()
