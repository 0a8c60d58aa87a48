"""The on-disk compile cache for the CPU: compiled programs kept across processes.

A program compiled for "cpu" is stored as one checked entry
(`pullback.compiler.backends.disk_cache`: format version, checksums, atomic write)
under `$PULLBACK_CACHE_DIR/cpu` (default `~/.cache/pullback/cpu`): its object code
and a JSON description (`pullback.compiler.backends.llvm.object_entry`). A later
process asking for the same program loads the object code into an engine instead
of running the passes, the lowering and LLVM.

An entry's key is the request (the program's structural key, mode, cotangents,
arguments differentiated, device) together with everything else that decides the
machine code: pullback's version and a fingerprint of its source files, the llvmlite
and LLVM versions, the target triple, the host CPU's name and features, and the
entry formats. The file name is the key's sha256; the entry's header holds the
hash of the whole key, checked on every read. A damaged entry, one that fails to
load, or one whose loading marker outlived its process (the loader crashed) is
deleted, counted as rejected, and the program is compiled and stored again.

`PULLBACK_CACHE_DIR=` (set, empty) or `pb.set_disk_cache(False)` turns every disk
cache off. Statistics are part of `pb.cache_info()`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING

import pullback
from pullback.compiler.backends import disk_cache
from pullback.devices import backend_of

if TYPE_CHECKING:  # the CPU backend (LLVM, scipy's BLAS) is imported on first use
    from pullback.compiler.backends.llvm import LLVMExecutable

SCHEMA = "pullback-cpu-cache-1"
"""Part of every key: what a key and an entry's `extra` mean."""


@dataclasses.dataclass
class Loaded:
    """A compiled program read from disk: its executable and how to read its results."""

    executable: LLVMExecutable
    entry: str
    grad_args: tuple[int, ...]
    num_results: int
    batched_args: tuple[int, ...]
    seconds: float


_counts = {"disk_hits": 0, "disk_misses": 0, "disk_writes": 0, "disk_rejected": 0}
_lock = threading.Lock()


def _count(name: str) -> None:
    with _lock:
        _counts[name] += 1


def counts() -> dict[str, int]:
    """Disk hits, misses (no entry), writes and rejected (damaged, deleted) entries."""
    with _lock:
        return dict(_counts)


def set_disk_cache(enabled: bool | None) -> bool | None:
    """Turn pullback's disk caches (CPU code, OpenCL binaries) on (True) or off (False)
    for this process, or back to the environment's choice (None: on unless
    `PULLBACK_CACHE_DIR` is set but empty). Off, nothing is read or written. Returns
    the previous setting: `previous = pb.set_disk_cache(False)` ...
    `pb.set_disk_cache(previous)` restores it."""
    return disk_cache.set_enabled(enabled)


def applies(device: str) -> bool:
    """Whether programs for `device` are kept on disk here (the CPU; OpenCL has its
    own binary cache) and the disk caches are on."""
    return backend_of(device)[0] == "cpu" and disk_cache.enabled()


def cache_dir() -> Path:
    """Where CPU entries are kept."""
    return disk_cache.cache_root() / "cpu"


@functools.cache
def _environment() -> tuple[str, ...]:
    """What besides the request decides the machine code (computed once)."""
    import llvmlite
    from llvmlite import binding

    from pullback.compiler.backends.llvm import object_entry

    return (SCHEMA, f"entry-{disk_cache.FORMAT_VERSION}", f"object-{object_entry.FORMAT}",
            pullback.__version__, _source_fingerprint(), llvmlite.__version__,
            ".".join(map(str, binding.llvm_version_info)), binding.get_process_triple(),
            binding.get_host_cpu_name(), binding.get_host_cpu_features().flatten())


def _source_fingerprint() -> str:
    """A hash of the contents of pullback's Python files: an edited compiler (a
    development install keeps its version number) gets new keys."""
    import pullback.compiler
    import pullback.dsl

    roots = sorted({os.path.dirname(m.__file__) for m in (pullback, pullback.compiler,
                                                          pullback.dsl) if m.__file__})
    roots = [r for r in roots if not any(r.startswith(o + os.sep) for o in roots)]
    digests = []
    for root in roots:
        for folder, subfolders, names in os.walk(root):
            subfolders[:] = [d for d in subfolders if not d.startswith(("__", "."))]
            for name in names:
                if name.endswith(".py"):
                    with open(os.path.join(folder, name), "rb") as f:
                        digests.append(hashlib.sha256(f.read()).digest())
    return hashlib.sha256(b"".join(sorted(digests))).hexdigest()


def key_text(request: Hashable) -> str:
    """The full key of a request: its text, with the environment's."""
    return repr((_environment(), request))


def entry_path(key: str) -> Path:
    return cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()}.bin"


def load(request: Hashable, llvm_ir: Callable[[], str]) -> Loaded | None:
    """The program stored for `request`, loaded; None when there is no usable entry
    (a damaged or unloadable one is deleted). `llvm_ir` makes its IR text on demand."""
    from pullback.compiler.backends.llvm import object_entry

    start = time.perf_counter()
    key = key_text(request)
    path = entry_path(key)
    if not path.exists():
        _count("disk_misses")
        return None
    payload = disk_cache.read_entry(path, key)
    if payload is None or disk_cache.crashed_a_loader(path):
        disk_cache.discard(path)
        _count("disk_rejected")
        return None
    try:
        with disk_cache.loading(path):
            exe, extra = object_entry.loads(payload, llvm_ir)
        loaded = Loaded(exe, _text(extra["entry"]), _ints(extra["grad_args"]),
                        _ints([extra["num_results"]])[0], _ints(extra["batched_args"]),
                        time.perf_counter() - start)
    except (object_entry.EntryError, KeyError, TypeError, RuntimeError):
        disk_cache.discard(path)
        _count("disk_rejected")
        return None
    _count("disk_hits")
    return loaded


def store(request: Hashable, executable: LLVMExecutable, entry: str,
          grad_args: tuple[int, ...], num_results: int, batched_args: tuple[int, ...]) -> None:
    """Keep a freshly compiled program for `request` (a failed write just keeps none)."""
    from pullback.compiler.backends.llvm import object_entry

    obj = executable.take_object()
    if obj is None:
        return
    key = key_text(request)
    extra = {"entry": entry, "grad_args": list(grad_args), "num_results": num_results,
             "batched_args": list(batched_args)}
    if disk_cache.write_entry(entry_path(key), key, object_entry.dumps(executable, obj, extra)):
        _count("disk_writes")


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _ints(value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise TypeError("expected a list of whole numbers >= 0")
    return tuple(value)
