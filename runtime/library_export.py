"""`pb.export`: compiled functions and their derivatives as a kernel library.

A kernel library is four files in one folder: `lib<name>.so` (the code, with a C API
and no dependency beyond libc and libm), `<name>.h` (the API, documented), `<name>.json`
(the manifest) and `<name>.py` (a loader needing only ctypes and numpy), plus
`<name>.npz` when entries close over arrays (their values at export, for the loader).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import importlib.metadata
import json
import keyword
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from llvmlite import binding

from pullback.compiled import Compiled
from pullback.compiler.export import c_source, header, layout, loader, manifest
from pullback.compiler.export.entry import Constant, ExportEntry, Seed, check_library_name
from pullback.compiler.export.targets import Target, resolve_target
from pullback.compiler.export.toolchain import build_shared_library
from pullback.export_entries import NotExportable, export_entry

RESERVED = ("context", "context_new", "context_new_in", "context_free", "context_error",
            "context_arena_bytes", "status_string")
"""Names an entry cannot have: the library's own C functions use them."""


@dataclasses.dataclass(frozen=True)
class ExportedLibrary:
    """The files of an exported kernel library."""

    directory: Path
    name: str
    shared_library: Path
    header: Path
    manifest: Path
    loader: Path
    captured_values: Path | None

    def load(self) -> Any:
        """The library opened through its Python loader (in this process)."""
        import importlib.util

        spec = importlib.util.spec_from_file_location(f"_pullback_library_{self.name}",
                                                      self.loader)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.load(self.directory, self.name)


def export(directory: str | os.PathLike[str], name: str, entries: Mapping[str, Compiled], *,
           target: str = "host", device: str | None = None) -> ExportedLibrary:
    """Write the kernel library `name` with `entries` into `directory`.

    Args:
      directory: the folder to write (created if missing); existing files of a library
        of the same name are replaced.
      name: the library's name, a C identifier: every exported symbol starts with
        `<name>_`.
      entries: entry name -> `pb.compile(...)` object, in any mode (value, gradient,
        withgradient, pullback, jacobian, withjacobian, hessian, hessian_reverse,
        diaghessian, or a training step that updates its inputs in place). The C
        function of entry `e` is `<name>_<e>`.
      target: "host" (this machine's CPU) or a portable level: "x86-64", "x86-64-v2",
        "x86-64-v3", "x86-64-v4", optionally with "+feature" parts.
      device: "cpu" or "opencl"; by default the device the entries were compiled for.

    Returns:
      The paths written (`ExportedLibrary`); `.load()` opens the library here.

    Raises:
      ValueError: a bad name, an entry that cannot run without Python (a `pb.hook`,
        `pb.showgrad` or Python `pb.eager_update` function), entries for mixed devices,
        a folder that is not writable, or a file in the way that an earlier export of
        this library did not write (such as the program's own `<name>.py`).
      pullback.compiler.export.toolchain.ToolchainError: no C compiler (install one, or
        `pip install "pullback[export]"`).
    """
    check_library_name(name)
    _check_file_names(name)
    if not isinstance(entries, Mapping) or not entries:
        raise TypeError("entries must be a non-empty dict of entry name -> pb.compile(...) "
                        f"object, got {entries!r}")
    for key in entries:
        check_library_name(key, "entry name")
        if key in RESERVED:
            raise ValueError(f"the entry name {key!r} is taken by the library's own C "
                             f"function (or type) {name}_{key}; reserved: {', '.join(RESERVED)}")
    _check_distinct(name, list(entries))
    exported = [export_entry(key, c) for key, c in entries.items()]
    _check_macros(name, exported)
    device = _device(exported, device)
    tgt = resolve_target(target)
    if device == "opencl" and target != "host":
        raise ValueError(f"target={target!r}: an OpenCL library's kernels are compiled by "
                         "the OpenCL driver where it runs; its host code is built for this "
                         "machine's C compiler default. Leave target at \"host\"")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write kernel library {name!r} into {out}: the folder is "
                         "not writable; choose another directory")
    _check_replaceable(out, name)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=out) as tmp:
        work = Path(tmp)
        if device == "opencl":
            files = _write_opencl_library(work, name, exported)
        else:
            files = _write_cpu_library(work, name, exported, tgt)
        with _folder_locked(out):  # two exports at once: one whole library wins
            for f in files:
                os.replace(work / f, out / f)
            stale = out / f"{name}.npz"
            if f"{name}.npz" not in files and stale.exists():
                stale.unlink()
    return ExportedLibrary(out, name, out / f"lib{name}.so", out / f"{name}.h",
                           out / f"{name}.json", out / f"{name}.py",
                           out / f"{name}.npz" if (out / f"{name}.npz").exists() else None)


C_HEADERS = frozenset("""assert complex ctype errno fenv float inttypes iso646 limits locale
math setjmp signal stdalign stdarg stdatomic stdbit stdbool stdckdint stddef stdint stdio
stdlib stdnoreturn string tgmath threads time uchar wchar wctype""".split())
"""C standard headers: a library `<name>.h` of one of these names hides it from every C
file compiled with the library's folder on the include path."""


SYSTEM_LIBRARIES = frozenset("""c m dl pthread rt util resolv crypt anl nsl atomic gcc
gcc_s OpenCL""".split())
"""Libraries of the C runtime (and OpenCL's loader): a `lib<name>.so` of one of these
names would be linked instead of it by `-l<name>` with the library's folder on -L."""


def _check_file_names(name: str) -> None:
    """`<name>.h` hides no C standard header, `lib<name>.so` no system library, and
    `import <name>` opens the loader."""
    if name in SYSTEM_LIBRARIES:
        raise ValueError(f"the library name {name!r} would write lib{name}.so, which "
                         f"hides the system library lib{name} (-l{name}) from programs "
                         "linked against the library's folder: choose another name")
    if name in C_HEADERS:
        raise ValueError(f"the library name {name!r} would write {name}.h, which hides the C "
                         f"standard header <{name}.h> from programs built against the "
                         "library: choose another name")
    if keyword.iskeyword(name) or name in sys.stdlib_module_names or name == "numpy":
        why = ("Python cannot import" if keyword.iskeyword(name)
               else f"hides the Python module {name!r} where it is imported")
        raise ValueError(f"the library name {name!r} would write the loader {name}.py, "
                         f"which {why}: choose another name")


def _check_replaceable(out: Path, name: str) -> None:
    """Every file the export would replace in `out` is a file of an earlier export of
    library `name` (never, say, the user's own `<name>.py` next to its source)."""
    def ours(path: Path) -> bool:
        try:
            with open(path, "rb") as f:
                head = f.read(200).decode(errors="replace")
        except OSError:
            return False
        if path.suffix == ".py":
            return head.startswith(Path(loader.__file__).read_text().splitlines()[0])
        if path.suffix == ".h":
            return head.startswith(f"/* {name}.h: kernel library {name}, exported by pullback")
        try:
            return json.loads(path.read_text()).get("format") == manifest.FORMAT
        except (OSError, ValueError, AttributeError):
            return False

    # an earlier export left one of these recognisably (the others may be damaged)
    exported_before = any(ours(out / f) for f in (f"{name}.json", f"{name}.h", f"{name}.py"))
    for f in (f"{name}.py", f"{name}.h", f"{name}.json", f"lib{name}.so", f"{name}.npz"):
        path = out / f
        replaceable = ours(path) if f.endswith(".py") else exported_before  # .py: code
        if path.exists() and not replaceable:
            raise ValueError(f"{path} exists and is not a file of an exported library "
                             f"{name!r}; pb.export replaces only its own files. Choose "
                             "another directory or library name")


@contextlib.contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder` (advisory, across processes) while the files of a
    library are moved in, so that concurrent exports never mix their files."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _check_distinct(name: str, keys: list[str]) -> None:
    """Entry names differ in more than case (the header spells them in capitals)."""
    seen: dict[str, str] = {}
    for key in keys:
        other = seen.setdefault(key.upper(), key)
        if other != key:
            raise ValueError(f"the entry names {other!r} and {key!r} differ only in case; "
                             f"the header's macros ({name.upper()}_{key.upper()}_...) spell "
                             "entry names in capitals: rename one")


def _check_macros(name: str, exported: list[ExportEntry]) -> None:
    """No two arrays of the library get the same header macros (`<NAME>_<ENTRY>_<ARRAY>_*`:
    entry `a` with array `b_c` and entry `a_b` with array `c` would)."""
    seen: dict[str, tuple[str, str]] = {}
    for e in exported:
        for a in (*e.inputs, *e.outputs):
            base = f"{name}_{e.name}_{a.name}".upper()
            other = seen.setdefault(base, (e.name, a.name))
            if other != (e.name, a.name):
                raise ValueError(
                    f"entry {e.name!r} array {a.name!r} and entry {other[0]!r} array "
                    f"{other[1]!r} would both define the header macros {base}_SIZE, ...; "
                    "rename one of the entries")


def _device(exported: list[ExportEntry], device: str | None) -> str:
    kinds = {e.name: e.device.split(":")[0] for e in exported}
    found = sorted(set(kinds.values()))
    if len(found) > 1:
        listed = ", ".join(f"{k} ({v})" for k, v in kinds.items())
        raise NotExportable(f"the entries were compiled for different devices ({listed}); "
                            "one library runs on one device: export them separately")
    if device is not None and device.split(":")[0] != found[0]:
        raise NotExportable(f"export(device='{device}'): the entries were compiled for "
                            f"'{found[0]}'; compile them with device='{device}'")
    return found[0]


def _versions() -> dict[str, str]:
    try:
        version = importlib.metadata.version("pullback")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"pullback_version": version,
            "llvm_version": ".".join(str(v) for v in binding.llvm_version_info)}


def _write_cpu_library(work: Path, name: str, exported: list[ExportEntry],
                       target: Target) -> list[str]:
    """Compile, generate and link every file of the library into `work`."""
    from pullback.compiler.backends.llvm.gemm import define_own_matmul, vector_bits_for
    from pullback.compiler.backends.llvm.objects import data_object, function_object

    machine = target.target_machine(pic=True)
    matmul = functools.partial(define_own_matmul,  # vectors as wide as the target's
                               vector_bits=vector_bits_for(target.required))
    objects, plans = [], []
    for e in exported:
        obj = function_object(e.module, e.function, c_source.native_symbol(name, e.name),
                              machine, matmul, e.lowering or None)
        _check_native(e, obj.spec)
        path = work / f"{e.name}.o"
        path.write_bytes(obj.code)
        objects.append(path)
        plans.append((obj.plan.arena_bytes, tuple(obj.plan.offsets)))
    blobs = _constants(name, exported)
    if blobs:
        path = work / "constants.o"
        path.write_bytes(data_object(blobs, machine))
        objects.append(path)
    ctx = layout.layout(exported, plans)
    check = f"{name}__missing_cpu_feature"
    (work / f"{name}.c").write_text(c_source.library_source(
        name, exported, ctx, target.cpu_check_c(check), check))
    versions = _versions()
    (work / f"{name}.h").write_text(header.library_header(
        name, exported, target.name, versions["pullback_version"]))
    build_shared_library(work / f"lib{name}.so", [work / f"{name}.c"], objects,
                         exported_prefix=f"{name}_")
    return _finish(work, name, exported, "cpu",
                   {"name": target.name, "triple": target.triple, "cpu": target.cpu,
                    "features": target.features, "required_features": list(target.required)},
                   versions)


def _write_opencl_library(work: Path, name: str, exported: list[ExportEntry]) -> list[str]:
    """The files of a library whose entries run on OpenCL: the kernels' source and a C
    host per entry (`opencl_host`), the same context and entry wrappers as the CPU's."""
    from pullback.compiler.backends.llvm.objects import data_object
    from pullback.compiler.export.cpu_features import cpu_check_c
    from pullback.compiler.export.opencl_host import opencl_entry_c

    hosts = []
    for e in exported:
        _check_native(e, e.module.spec)
        hosts.append(opencl_entry_c(c_source.opencl_prefix(name, e.name), e.module))
    objects = []
    blobs = _constants(name, exported)
    if blobs:
        path = work / "constants.o"
        path.write_bytes(data_object(blobs, resolve_target("host").target_machine(pic=True)))
        objects.append(path)
    ctx = layout.layout(exported, [(0, ()) for _ in exported])
    check = f"{name}__missing_cpu_feature"
    (work / f"{name}.c").write_text(c_source.library_source(
        name, exported, ctx, cpu_check_c(check, ()), check, hosts))
    versions = _versions()
    (work / f"{name}.h").write_text(header.library_header(
        name, exported, "opencl", versions["pullback_version"]))
    build_shared_library(work / f"lib{name}.so", [work / f"{name}.c"], objects,
                         libraries=("m", "dl"), exported_prefix=f"{name}_")
    devices = sorted({e.device for e in exported})
    return _finish(work, name, exported, "opencl",
                   {"name": "opencl", "compiled_for": devices, "required_features": []},
                   versions)


def _constants(name: str, exported: list[ExportEntry]) -> dict[str, bytes]:
    return {c_source.constant_symbol(name, e.name, k): source.data.tobytes()
            for e in exported for k, source in enumerate(e.native_inputs)
            if isinstance(source, Constant)}


def _finish(work: Path, name: str, exported: list[ExportEntry], device: str,
            target: dict[str, Any], versions: dict[str, str]) -> list[str]:
    """Write the captured values, the manifest and the loader; the files written."""
    files = [f"lib{name}.so", f"{name}.h", f"{name}.json", f"{name}.py"]
    captured = {a.name: v for e in exported for a, v in
                zip([a for a in e.inputs if a.role == "captured"], e.captured)}
    if captured:
        np.savez(work / f"{name}.npz", **captured)
        files.append(f"{name}.npz")
    doc = manifest.manifest(
        name, exported, device=device, target=target, versions=versions,
        context_bytes=_context_bytes(work / f"lib{name}.so", name),
        captured_values=f"{name}.npz" if captured else None)
    (work / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    shutil.copyfile(loader.__file__, work / f"{name}.py")
    return files


def _context_bytes(library: Path, name: str) -> int:
    """What the built library's `<name>_context_arena_bytes()` returns.

    The library is closed again: the file becomes `lib<name>.so` in the folder, and a
    process that kept it mapped would die of SIGBUS when it is later rewritten in place
    (`cp` over it, a truncated copy)."""
    import _ctypes
    import ctypes

    lib = ctypes.CDLL(str(library))
    try:
        fn = getattr(lib, f"{name}_context_arena_bytes")
        fn.restype = ctypes.c_size_t
        return int(fn())
    finally:
        _ctypes.dlclose(lib._handle)


def _check_native(entry: ExportEntry, spec: Any) -> None:
    """The compiled function takes and returns what the entry's mapping says."""
    want_in = []
    for source in entry.native_inputs:
        if isinstance(source, Seed):
            want_in.append((source.dtype, (source.total, *source.shape)))
        elif isinstance(source, Constant):
            want_in.append((source.data.dtype, source.data.shape))
        else:
            a = entry.inputs[source]
            want_in.append((a.dtype, a.shape))
    # an input may be passed where the function takes a reshape of it: compare sizes
    want_in = [(d, int(np.prod(s, dtype=np.int64))) for d, s in want_in]
    got_in = [(np.dtype(d), int(np.prod(s, dtype=np.int64))) for d, s in spec.inputs]
    got_out = [(np.dtype(d), tuple(s)) for d, s in spec.outputs]
    want_out = [(np.dtype(d), tuple(s)) for d, s in entry.native_outputs]
    if got_in != want_in or got_out != want_out:
        raise AssertionError(
            f"entry '{entry.name}': the compiled function takes {got_in} and returns "
            f"{got_out}, but the export expected {want_in} and {want_out}")
