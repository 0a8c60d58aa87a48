"""Building OpenCL programs, with an in-memory and an on-disk binary cache.

Memory: one built program per (context, source, options). Disk: the device binary
(`program.binaries`) under `$PULLBACK_CACHE_DIR/opencl` (default
`~/.cache/pullback/opencl`), keyed by a hash of the source, the device and driver,
the platform version and the build options; a new process rebuilds from it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from pullback.compiler.backends.opencl.devices import cl

_MEMORY: dict[tuple[int, str], Any] = {}
_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where program binaries are kept."""
    root = os.environ.get("PULLBACK_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "pullback"
    return base / "opencl"


def cache_key(device: Any, source: str, options: str) -> str:
    h = hashlib.sha256()
    for part in (source, device.name, device.driver_version, device.platform.version,
                 options, cl().VERSION_TEXT):
        h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


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
        program, origin = _from_source(context, source, options), "source"
        _store(key, program)
    with _LOCK:
        _MEMORY[(context.int_ptr, key)] = program
    return program, origin


def _from_source(context: Any, source: str, options: str) -> Any:
    ocl = cl()
    try:
        return ocl.Program(context, source).build(options=options)
    except ocl.RuntimeError as e:
        raise RuntimeError(f"the OpenCL compiler rejected the generated program:\n{e}") from e


def _from_disk(context: Any, device: Any, key: str, options: str) -> Any | None:
    path = cache_dir() / f"{key}.bin"
    try:
        binary = path.read_bytes()
    except OSError:
        return None
    ocl = cl()
    try:
        return ocl.Program(context, [device], [binary]).build(options=options)
    except ocl.Error:
        path.unlink(missing_ok=True)
        return None


def _store(key: str, program: Any) -> None:
    binaries = program.binaries
    if len(binaries) != 1 or not binaries[0]:
        return
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(binaries[0])
        os.replace(tmp, folder / f"{key}.bin")
    except OSError:
        return
