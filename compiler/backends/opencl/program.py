"""Building OpenCL programs, with an in-memory and a checked on-disk binary cache.

Memory: a built program is shared by every executable of the same (context,
source, options) while one of them lives (weak references: dropping the last
executable frees the program). Disk: the device binary (`program.binaries`) under
`$PULLBACK_CACHE_DIR/opencl` (default `~/.cache/pullback/opencl`; none when the disk
caches are off: `disk_cache.enabled`), keyed by a hash
of the source, the device and driver, the platform version, the build options and
the binary format, as a checked entry of `pullback.compiler.backends.disk_cache`
(format version, checksums of key and contents). A damaged entry, or one the
driver refuses, is deleted and the program is built from source again; it is never
handed to the driver. While the driver loads an entry, a marker file names the
loading process: an entry whose marker outlived its process (the driver crashed on
it) is deleted by the next process too. Source builds bypass pyopencl's own binary
cache, and PoCL's kernel cache is kept off and inside pullback's folder
(`pocl_cache`), so no cache outside these checked entries can hand a damaged binary
back.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from pathlib import Path
from typing import Any

from pullback.compiler.backends import disk_cache
from pullback.compiler.backends.opencl.devices import cl

BINARY_FORMAT = "opencl-binary-1"
"""Part of every key: a change in what an entry's payload means gets new keys."""

_MEMORY: weakref.WeakValueDictionary[tuple[int, str], Any] = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where program binaries are kept."""
    return disk_cache.cache_root() / "opencl"


def cache_key(device: Any, source: str, options: str) -> str:
    h = hashlib.sha256()
    for part in (BINARY_FORMAT, source, device.name, device.driver_version,
                 device.platform.version, options, cl().VERSION_TEXT):
        h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def entry_path(key: str) -> Path:
    """The file of the disk entry for `key`."""
    return cache_dir() / f"{key}.bin"


def build_program(context: Any, device: Any, source: str,
                  options: str = "") -> tuple[Any, str]:
    """A built program and where it came from: "memory", "disk" or "source"."""
    key = cache_key(device, source, options)
    with _LOCK:
        hit = _MEMORY.get((context.int_ptr, key))
    if hit is not None:
        return hit, "memory"
    program, origin = _from_disk(context, device, key, options), "disk"
    if program is None:
        program, origin = _from_source(context, device, source, options), "source"
        _store(key, program)
    with _LOCK:
        _MEMORY[(context.int_ptr, key)] = program
    return program, origin


def _from_source(context: Any, device: Any, source: str, options: str) -> Any:
    ocl = cl()
    try:
        # A bare `_Program` builds without pyopencl's binary cache, whose entries
        # are not checked; pullback keeps the binary itself (`_store`).
        program = ocl.Program(ocl._cl._Program(context, source))
        return program.build(options=options, devices=[device])
    except ocl.RuntimeError as e:
        raise RuntimeError(f"the OpenCL compiler rejected the generated program:\n{e}") from e


def _from_disk(context: Any, device: Any, key: str, options: str) -> Any | None:
    if not disk_cache.enabled():
        return None
    path = entry_path(key)
    binary = disk_cache.read_entry(path, key)
    if binary is None:
        return None
    if disk_cache.crashed_a_loader(path):
        disk_cache.discard(path)
        return None
    ocl = cl()
    with disk_cache.loading(path):
        try:
            return ocl.Program(context, [device], [binary]).build(options=options,
                                                                  devices=[device])
        except ocl.Error:
            disk_cache.discard(path)  # intact but refused (e.g. a changed driver): rebuild
            return None


def _store(key: str, program: Any) -> None:
    if not disk_cache.enabled():
        return
    binaries = program.binaries
    if len(binaries) != 1 or not binaries[0]:
        return
    disk_cache.write_entry(entry_path(key), key, bytes(binaries[0]))
