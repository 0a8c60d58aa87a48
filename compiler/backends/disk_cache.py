"""Checked, crash-safe entries of pullback's on-disk caches.

Every entry is one file: a fixed header, then the payload.

    magic       8 bytes   b"PBCACHE\\n"
    version     u32       FORMAT_VERSION (little-endian)
    key hash    32 bytes  sha256 of the entry's key (its full text, not the file name)
    data hash   32 bytes  sha256 of the payload
    length      u64       the payload's size in bytes

`read_entry` returns the payload only when every field checks out; a file that is
short, long, from another format version, for another key or with a wrong checksum
is deleted and reported as missing, so its bytes never reach a driver or loader.
An intact entry can still crash the code that loads it (a driver bug): a loader
holds `loading(path)` while it loads, which leaves a marker file naming its process
and thread, and `crashed_a_loader(path)` tells the next process that a marker
outlived its process, so that the entry is discarded instead of loaded again.
`write_entry` writes a temporary file in the same folder, flushes and fsyncs it,
renames it into place and fsyncs the folder: a reader sees the old entry or the
whole new one, also after a crash or power loss. Write failures (read-only or full
disk) are not errors: the cache is an optimisation, so the entry is just not kept.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

MAGIC = b"PBCACHE\n"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sI32s32sQ")
HEADER_SIZE = _HEADER.size
_LOADING = ".loading."


def cache_root() -> Path:
    """The folder of every pullback disk cache: `$PULLBACK_CACHE_DIR`, or
    `~/.cache/pullback` when that is unset or empty."""
    root = os.environ.get("PULLBACK_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "pullback"


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def encode_entry(key: str, payload: bytes, version: int = FORMAT_VERSION) -> bytes:
    """The bytes of an entry holding `payload` under `key`."""
    header = _HEADER.pack(MAGIC, version, key_digest(key), hashlib.sha256(payload).digest(),
                          len(payload))
    return header + payload


def decode_entry(key: str, data: bytes) -> bytes | None:
    """The payload of entry bytes `data` if they are a whole, current entry for `key`."""
    if len(data) < HEADER_SIZE:
        return None
    magic, version, key_hash, data_hash, length = _HEADER.unpack_from(data)
    payload = data[HEADER_SIZE:]
    if (magic != MAGIC or version != FORMAT_VERSION or key_hash != key_digest(key)
            or length != len(payload) or hashlib.sha256(payload).digest() != data_hash):
        return None
    return payload


def read_entry(path: Path, key: str) -> bytes | None:
    """The payload stored at `path` for `key`; None when there is none. A damaged
    entry (see the module docstring) is deleted and also gives None."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    payload = decode_entry(key, data)
    if payload is None:
        discard(path)
    return payload


def write_entry(path: Path, key: str, payload: bytes) -> bool:
    """Store `payload` for `key` at `path`, atomically and durably; whether it was kept."""
    folder = path.parent
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _sweep_temporaries(path)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(encode_entry(key, payload))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(folder)
    except OSError:
        return False
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return True


STALE_SECONDS = 3600.0
"""Age after which a temporary file of an unfinished write (its writer crashed) is
deleted by the next write of the same entry."""


def _sweep_temporaries(path: Path) -> None:
    cutoff = time.time() - STALE_SECONDS
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()


def discard(path: Path) -> None:
    """Delete the entry at `path` (a damaged or unloadable one); missing is fine."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def loading(path: Path) -> Iterator[None]:
    """Mark the entry at `path` as being loaded by this thread for the block."""
    marker = path.with_name(f"{path.name}{_LOADING}{os.getpid()}.{threading.get_ident()}")
    with contextlib.suppress(OSError):
        marker.touch()
    try:
        yield
    finally:
        discard(marker)


def crashed_a_loader(path: Path) -> bool:
    """Whether a process died while loading the entry at `path` (its `loading`
    marker is left and the process is gone); such stale markers are deleted."""
    crashed = False
    for marker in path.parent.glob(f"{glob.escape(path.name)}{_LOADING}*"):
        pid = marker.name[len(path.name) + len(_LOADING):].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            discard(marker)
            crashed = True
    return crashed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to another user
    return True


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform can open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
