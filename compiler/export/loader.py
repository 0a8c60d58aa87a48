"""Python loader of a kernel library exported by pullback; needs only ctypes and numpy.

This file is copied next to the library as `<name>.py`; it reads `<name>.json` (the
manifest) and opens `lib<name>.so` from its own folder:

    import gmm
    lib = gmm.load()
    value, grads = lib.gradient(alphas, means, icf)

Each entry is a method taking the entry's inputs in order (or by name) and returning
numpy arrays grouped as `pb.compile` of that mode returns them. Inputs the function
closed over when it was exported may be left out: the library then uses its own copy
of their values at export time (from `<name>.npz`), which calls that write them in
place (optimiser state) keep updating. Each thread gets its own context.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent
_NAME = Path(__file__).stem


class LibraryError(RuntimeError):
    """The library could not start, or a call failed (the message says why)."""


def load(directory: str | Path | None = None, name: str | None = None) -> Library:
    """The library `name` (default: this file's name) in `directory` (default: here)."""
    return Library(Path(directory) if directory is not None else _HERE, name or _NAME)


def _open(path: Path) -> ctypes.CDLL:
    """`path` opened, as it is now on disk. The dynamic loader gives back the library
    already open under the same path even when the file has been replaced since (a
    library exported again into the same folder); the new file is then opened from a
    private copy, so that its code, not the old one, runs with its manifest."""
    if not _replaced_since_opened(path):
        return ctypes.CDLL(str(path))
    with tempfile.TemporaryDirectory(prefix="pullback-library-") as folder:
        copy = Path(folder) / path.name
        shutil.copyfile(path, copy)
        return ctypes.CDLL(str(copy))  # mapped: the copy can go


def _replaced_since_opened(path: Path) -> bool:
    """Whether this process maps a file at `path` that is not the file there now."""
    try:
        maps = Path("/proc/self/maps").read_text()
        now = os.stat(path)
    except OSError:
        return False
    where = os.path.realpath(path)
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6:
            continue
        mapped = fields[5]
        deleted = mapped.endswith(" (deleted)")
        if deleted:
            mapped = mapped[:-len(" (deleted)")]
        if mapped == where and (deleted or int(fields[4]) != now.st_ino):
            return True
    return False


class _Held:
    """A thread's context; its finalizer frees the context when the thread's local
    storage goes (the thread ended)."""

    def __init__(self, ctx: int):
        self.ctx = ctx


class Library:
    """An opened kernel library: one attribute per entry, callable."""

    def __init__(self, directory: Path, name: str):
        manifest_path = directory / f"{name}.json"
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as error:
            raise LibraryError(f"cannot read the manifest {manifest_path}: {error}") from None
        self.name = self.manifest["library"]
        path = directory / self.manifest["shared_library"]
        try:
            self._lib = _open(path)
        except OSError as error:
            raise LibraryError(f"cannot open {path}: {error}") from None
        lib, prefix = self._lib, self.name
        self._new = getattr(lib, f"{prefix}_context_new")
        self._new.restype, self._new.argtypes = ctypes.c_void_p, []
        self._free = getattr(lib, f"{prefix}_context_free")
        self._free.restype, self._free.argtypes = None, [ctypes.c_void_p]
        self._error = getattr(lib, f"{prefix}_context_error")
        self._error.restype, self._error.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
        self._local = threading.local()
        self._contexts: set[int] = set()
        self._lock = threading.Lock()
        self._captured: dict[str, np.ndarray] = {}
        values = self.manifest.get("captured_values")
        if values:
            with np.load(directory / values) as stored:
                self._captured = {key: np.array(stored[key], order="C", copy=True)
                                  for key in stored.files}
        self.context()  # fail now, not at the first call, on an unsupported CPU
        for entry, spec in self.manifest["entries"].items():
            setattr(self, entry, Entry(self, entry, spec))

    def context(self) -> int:
        """This thread's context (created on first use, freed when the thread ends)."""
        held = getattr(self._local, "held", None)
        if held is None:
            ctx = self._new()
            if not ctx:
                raise LibraryError(self._error(None).decode(errors="replace"))
            with self._lock:
                self._contexts.add(ctx)
            held = _Held(ctx)
            weakref.finalize(held, self._release, ctx)
            self._local.held = held
        return held.ctx

    def _release(self, ctx: int) -> None:
        """Free `ctx` unless `close` already did."""
        with self._lock:
            if ctx not in self._contexts:
                return
            self._contexts.discard(ctx)
            self._free(ctx)

    def error(self, ctx: int) -> str:
        return self._error(ctx).decode(errors="replace")

    def captured(self, name: str) -> np.ndarray:
        """The library's own copy of the captured input `name`."""
        return self._captured[name]

    def close(self) -> None:
        """Free every context (the library cannot be called afterwards)."""
        with self._lock:
            for ctx in self._contexts:
                self._free(ctx)
            self._contexts.clear()
        self._local = threading.local()

    def __repr__(self) -> str:
        return (f"<kernel library {self.name}: "
                f"{', '.join(self.manifest['entries'])} ({self.manifest['target']['name']})>")


class Entry:
    """One entry point: call it with its inputs."""

    def __init__(self, library: Library, name: str, spec: dict[str, Any]):
        self.library, self.name, self.spec = library, name, spec
        self.mode: str = spec["mode"]
        self._inputs = spec["inputs"]
        self._outputs = spec["outputs"]
        self._fn = getattr(library._lib, spec["symbol"])
        self._fn.restype = ctypes.c_int
        self._fn.argtypes = [ctypes.c_void_p] + [ctypes.c_void_p] * (
            len(self._inputs) + len(self._outputs))
        self.__doc__ = _doc(name, spec)

    def __call__(self, *args: Any, **named: Any) -> Any:
        inputs = self._bind(args, named)
        arrays = [self._checked(spec, value) for spec, value in zip(self._inputs, inputs)]
        outs = [np.empty(o["shape"], o["dtype"]) for o in self._outputs]
        ctx = self.library.context()
        status = self._fn(ctx, *[a.ctypes.data for a in arrays],
                          *[o.ctypes.data for o in outs])
        if status != 0:
            raise LibraryError(f"{self.library.name}.{self.name}: {self.library.error(ctx)}")
        return _grouped(self.mode, self._inputs, self._outputs, outs)

    def _bind(self, args: tuple[Any, ...], named: dict[str, Any]) -> list[Any]:
        names = [i["name"] for i in self._inputs]
        if len(args) > len(names):
            raise TypeError(f"{self.name} takes at most {len(names)} inputs "
                            f"({', '.join(names)}), got {len(args)}")
        values: dict[str, Any] = dict(zip(names, args))
        for key, value in named.items():
            if key not in names:
                raise TypeError(f"{self.name} has no input '{key}'; inputs: {', '.join(names)}")
            if key in values:
                raise TypeError(f"{self.name} got input '{key}' twice")
            values[key] = value
        out = []
        for spec in self._inputs:
            key = spec["name"]
            if key in values:
                out.append(values[key])
            elif spec["role"] == "captured" and key in self.library._captured:
                out.append(self.library._captured[key])
            else:
                raise TypeError(f"{self.name} is missing input '{key}' ({spec['description']})")
        return out

    def _checked(self, spec: dict[str, Any], value: Any) -> np.ndarray:
        dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
        kind = f"C-contiguous {dtype} array of shape {shape}"
        want = f"a {kind}"
        if spec["written"]:
            if not (isinstance(value, np.ndarray) and value.dtype == dtype
                    and value.shape == shape and value.flags.c_contiguous
                    and value.flags.writeable):
                raise ValueError(f"{self.name}: input '{spec['name']}' is written in place, so "
                                 f"it must be a writeable {kind}; got {_words(value)}")
            return value
        if spec.get("integers"):  # an index array carried as floating point
            if isinstance(value, np.ndarray) and value.dtype.kind in "iu" \
                    and value.shape == shape:
                return np.asarray(value, dtype=dtype, order="C")
            if shape == () and isinstance(value, int | np.integer) \
                    and not isinstance(value, bool):
                return np.asarray(value, dtype=dtype)
            raise ValueError(f"{self.name}: input '{spec['name']}' holds integers: it must "
                             f"be an integer array of shape {shape}; got {_words(value)}")
        if isinstance(value, np.ndarray):
            if value.shape != shape or not np.can_cast(value.dtype, dtype, "same_kind") or (
                    value.dtype.kind == "f" and dtype.kind == "f"
                    and value.dtype.itemsize > dtype.itemsize):
                raise ValueError(f"{self.name}: input '{spec['name']}' must be {want}; got "
                                 f"{_words(value)}")
            return np.asarray(value, dtype=dtype, order="C")
        if shape == () and isinstance(value, int | float | np.number) \
                and not isinstance(value, bool) \
                and np.asarray(value).dtype.kind in _SCALAR_KINDS.get(dtype.kind, ""):
            return np.asarray(value, dtype=dtype)  # no float is cut to an integer
        raise ValueError(f"{self.name}: input '{spec['name']}' must be {want}; got "
                         f"{_words(value)}")


_SCALAR_KINDS = {"f": "iuf", "i": "iu", "u": "u"}
"""The kinds of Python numbers an input of each kind takes as a scalar."""


def _words(value: Any) -> str:
    if isinstance(value, np.ndarray):
        layout = "" if value.flags.c_contiguous else "non-contiguous "
        ro = "" if value.flags.writeable else "read-only "
        return f"a {ro}{layout}{value.dtype} array of shape {value.shape}"
    return f"{type(value).__name__} {value!r}"


def _one(arrays: list[np.ndarray]) -> Any:
    values = [float(a) if a.ndim == 0 and a.dtype.kind == "f" else a for a in arrays]
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _per_argument(inputs: list[dict[str, Any]], specs: list[dict[str, Any]],
                  outs: list[np.ndarray], role: str) -> tuple[Any, ...]:
    """The derivatives of `role`, one per argument in argument order (None for an
    argument without one, such as an index array, as `pb.compile` returns), then those
    with respect to other inputs (parameters the function closes over)."""
    of = {spec["of"]: out for spec, out in zip(specs, outs) if spec["role"] == role}
    arguments = [i["name"] for i in inputs if i["role"] == "argument"]
    found = [of.pop(name, None) for name in arguments] + list(of.values())
    return tuple(float(d) if d is not None and d.ndim == 0 else d for d in found)


def _grouped(mode: str, inputs: list[dict[str, Any]], specs: list[dict[str, Any]],
             outs: list[np.ndarray]) -> Any:
    """The outputs as `pb.compile` of `mode` returns them (flattened pytrees)."""
    by_role: dict[str, list[np.ndarray]] = {}
    for spec, out in zip(specs, outs):
        by_role.setdefault(spec["role"], []).append(out)
    value = _one(by_role.get("value", []))
    if mode == "value":
        return value
    if mode in ("gradient", "withgradient", "pullback"):
        grads = _per_argument(inputs, specs, outs, "gradient")
        return grads if mode == "gradient" else (value, grads)
    if mode in ("jacobian", "withjacobian"):
        jacs = tuple(by_role.get("jacobian", []))
        return jacs if mode == "jacobian" else (value, jacs)
    if mode == "diaghessian":
        return _per_argument(inputs, specs, outs, "diaghessian")
    (h,) = by_role["hessian"]
    return float(h) if h.ndim == 0 else h


def _doc(name: str, spec: dict[str, Any]) -> str:
    ins = ", ".join(f"{i['name']}: {i['dtype']}{list(i['shape'])}" for i in spec["inputs"])
    outs = ", ".join(f"{o['name']}: {o['dtype']}{list(o['shape'])}" for o in spec["outputs"])
    return f"{name}({ins}) -> {outs}  [mode {spec['mode']}]"
