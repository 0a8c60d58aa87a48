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
A folder keeps at most `folder_limit()` bytes of entries (1 GiB, or
`$PULLBACK_CACHE_BYTES`): each write deletes the least recently used entries beyond
that (reading an entry marks it used). Every cache asks `enabled()` first:
`PULLBACK_CACHE_DIR=` (set, empty) or `set_enabled(False)` turns them all off
(nothing read or written).
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


ENV_VAR = "PULLBACK_CACHE_DIR"
_switch: bool | None = None


def cache_root() -> Path:
    """The folder of every pullback disk cache: `$PULLBACK_CACHE_DIR`, or
    `~/.cache/pullback` when that is unset (see `enabled` for set but empty)."""
    root = os.environ.get(ENV_VAR)
    return Path(root) if root else Path.home() / ".cache" / "pullback"


def enabled() -> bool:
    """Whether pullback's disk caches are read and written: as `set_enabled` last set,
    else unless `$PULLBACK_CACHE_DIR` is set but empty (`PULLBACK_CACHE_DIR=`)."""
    if _switch is not None:
        return _switch
    return os.environ.get(ENV_VAR) != ""


def set_enabled(on: bool | None) -> bool | None:
    """Turn every disk cache on (True) or off (False) for this process, or back to what
    `$PULLBACK_CACHE_DIR` says (None); returns the previous setting, for restoring."""
    global _switch
    if on is not None and not isinstance(on, bool):
        raise TypeError(f"the disk cache switch takes True, False or None (follow "
                        f"PULLBACK_CACHE_DIR), got {on!r}")
    previous, _switch = _switch, on
    return previous


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
    else:
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: pruned last (see `prune`)
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
        prune(folder, folder_limit(), keep=path)
    except OSError:
        return False
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return True


DEFAULT_FOLDER_BYTES = 1 << 30
"""Bytes of entries one cache folder (`cpu`, `opencl`) keeps by default: 1 GiB."""


def folder_limit() -> int:
    """The bytes of entries a cache folder keeps: `$PULLBACK_CACHE_BYTES` (a whole
    number of bytes, optionally with a K, M or G suffix), else `DEFAULT_FOLDER_BYTES`."""
    text = os.environ.get("PULLBACK_CACHE_BYTES", "").strip()
    if not text:
        return DEFAULT_FOLDER_BYTES
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit():
        raise ValueError(f"PULLBACK_CACHE_BYTES={text!r} is not a size: give a whole number "
                         "of bytes, optionally with a K, M or G suffix (for instance 500M)")
    return int(digits) * scale


def prune(folder: Path, limit: int, keep: Path | None = None) -> int:
    """Delete the least recently used entries of `folder` until its entries take at most
    `limit` bytes (an entry is used when it is written or read); never `keep`. Returns
    how many were deleted. Entries of other processes may vanish meanwhile: a reader
    then finds no entry and compiles, as for any missing one."""
    entries = []
    with contextlib.suppress(OSError):
        for item in os.scandir(folder):
            if item.name.startswith(".") or _LOADING in item.name:
                continue
            with contextlib.suppress(OSError):
                if item.is_file(follow_symlinks=False):
                    st = item.stat(follow_symlinks=False)
                    entries.append((st.st_mtime_ns, st.st_size, Path(item.path)))
    total = sum(size for _, size, _ in entries)
    deleted = 0
    for _, size, path in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        if keep is not None and path == keep:
            continue
        discard(path)
        total -= size
        deleted += 1
    return deleted


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
