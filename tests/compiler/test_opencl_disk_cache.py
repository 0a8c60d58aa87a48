"""Damaged disk-cache entries are found, deleted and rebuilt, never handed to a driver.

The checked entry format (`disk_cache`) is tested directly; the OpenCL binary cache
is tested end to end: each kind of damage is written over a real entry, then a
fresh process compiles and runs a function on OpenCL. It must exit normally with
the right numbers (checked against numpy) and leave a valid entry behind.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from opencl_platform import NO_OPENCL

from pullback.compiler.backends import disk_cache

KEY = "a key: source, device, driver, options"


# ---------------------------------------------------------------------------
# The entry format
# ---------------------------------------------------------------------------


def _flip(data: bytes, positions: list[int]) -> bytes:
    out = bytearray(data)
    for p in positions:
        out[p] ^= 0x5A
    return bytes(out)


def _random_bits(data: bytes, seed: int, n: int = 6) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    for p in rng.sample(range(len(out)), n):
        out[p] ^= 1 << rng.randrange(8)
    return bytes(out)


H = disk_cache.HEADER_SIZE

DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda d: b"",
    "truncated-in-header": lambda d: d[:H // 2],
    "header-only": lambda d: d[:H],
    "truncated-half": lambda d: d[:len(d) // 2],
    "one-byte-short": lambda d: d[:-1],
    "one-byte-long": lambda d: d + b"\0",
    "bit-flip-magic": lambda d: _flip(d, [0]),
    "bit-flip-key-hash": lambda d: _flip(d, [14]),
    "bit-flip-data-hash": lambda d: _flip(d, [50]),
    "bit-flip-length": lambda d: _flip(d, [H - 8]),
    "bit-flip-payload-start": lambda d: _flip(d, [H]),
    "bit-flip-payload-end": lambda d: _flip(d, [len(d) - 1]),
    "random-bits-1": lambda d: _random_bits(d, 1),
    "random-bits-2": lambda d: _random_bits(d, 2),
    "zeroed": lambda d: bytes(len(d)),
    "payload-zeroed": lambda d: d[:H] + bytes(len(d) - H),
    "garbage": lambda d: random.Random(3).randbytes(len(d)),
    "wrong-key": lambda d: disk_cache.encode_entry("another key", d[H:]),
    "wrong-version": lambda d: disk_cache.encode_entry(KEY, d[H:],
                                                       disk_cache.FORMAT_VERSION + 1),
    "raw-payload-without-header": lambda d: d[H:],
}


def test_round_trip_and_atomic_write(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "entry.bin"
    payload = bytes(range(256)) * 40
    assert disk_cache.write_entry(path, KEY, payload)
    assert disk_cache.read_entry(path, KEY) == payload
    assert [p.name for p in path.parent.iterdir()] == ["entry.bin"]  # no temporaries left
    assert disk_cache.read_entry(tmp_path / "missing.bin", KEY) is None


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_entry_is_refused_and_deleted(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "entry.bin"
    payload = random.Random(0).randbytes(3000)
    good = disk_cache.encode_entry(KEY, payload)
    path.write_bytes(DAMAGE[damage](good))
    assert disk_cache.read_entry(path, KEY) is None
    assert not path.exists()


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_loading_marker_flags_only_a_dead_loader(tmp_path: Path) -> None:
    path = tmp_path / "entry.bin"
    assert disk_cache.write_entry(path, KEY, b"payload")
    with disk_cache.loading(path):
        assert len(list(tmp_path.glob("entry.bin.loading.*"))) == 1
        assert not disk_cache.crashed_a_loader(path)   # this process is alive
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.bin"]
    stale = tmp_path / f"entry.bin.loading.{_dead_pid()}.7"
    stale.touch()
    assert disk_cache.crashed_a_loader(path)
    assert not stale.exists()


def test_write_deletes_stale_temporaries_of_crashed_writes(tmp_path: Path) -> None:
    path = tmp_path / "entry.bin"
    stale, fresh = tmp_path / ".entry.bin.abc.tmp", tmp_path / ".entry.bin.def.tmp"
    for tmp in (stale, fresh):
        tmp.write_bytes(b"half an entry")
    old = time.time() - 2 * disk_cache.STALE_SECONDS
    os.utime(stale, (old, old))
    assert disk_cache.write_entry(path, KEY, b"payload")
    assert not stale.exists() and fresh.exists()   # a fresh one may be another writer's
    assert disk_cache.read_entry(path, KEY) == b"payload"


def test_unwritable_folder_is_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    assert not disk_cache.write_entry(blocker / "entry.bin", KEY, b"data")


# ---------------------------------------------------------------------------
# The OpenCL binary cache, in fresh processes
# ---------------------------------------------------------------------------

_RUN = """
    import json, os
    import numpy as np
    import pullback as pb
    from pullback.compiler.backends import disk_cache
    x = np.linspace(-2.0, 2.0, 37)
    w = np.linspace(0.5, 1.5, 37)
    with pb.device("opencl"):
        c = pb.compile(lambda v, u: pb.sum(pb.tanh(v) * u + v ** 2), x, w, mode="withgradient")
        value, (gx, gw) = c(x, w)
    print(json.dumps({"origin": c._built.executable.build_origin, "value": float(value),
                      "gx": gx.tolist(), "gw": gw.tolist(),
                      "pocl_cache": os.environ.get("POCL_KERNEL_CACHE"),
                      "pocl_dir": os.environ.get("POCL_CACHE_DIR")}))
"""


def _expected() -> tuple[float, np.ndarray, np.ndarray]:
    x, w = np.linspace(-2.0, 2.0, 37), np.linspace(0.5, 1.5, 37)
    return (float(np.sum(np.tanh(x) * w + x ** 2)), (1 - np.tanh(x) ** 2) * w + 2 * x,
            np.tanh(x))


def _run(cache: Path, **env: str) -> dict:
    base = {k: v for k, v in os.environ.items()
            if k not in ("POCL_CACHE_DIR", "POCL_KERNEL_CACHE")}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_RUN)], capture_output=True,
                          text=True, timeout=300,
                          env={**base, "PULLBACK_CACHE_DIR": str(cache), **env})
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    value, gx, gw = _expected()
    np.testing.assert_allclose(result["value"], value, rtol=1e-12)
    np.testing.assert_allclose(result["gx"], gx, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(result["gw"], gw, rtol=1e-12, atol=1e-14)
    return result


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "opencl").glob("*.bin"))


@pytest.fixture(scope="module")
def good_entry(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """A valid cache entry of the test program: (file name, bytes)."""
    cache = tmp_path_factory.mktemp("cache")
    first = _run(cache)
    assert first["origin"] == "source"
    assert first["pocl_cache"] == "0"
    assert first["pocl_dir"] == str(cache / "pocl")
    (entry,) = _entries(cache)
    return entry.name, entry.read_bytes()


def _valid(path: Path) -> bool:
    return disk_cache.decode_entry(path.name.removesuffix(".bin"), path.read_bytes()) is not None


@NO_OPENCL
def test_valid_entry_serves_a_fresh_process(tmp_path: Path,
                                            good_entry: tuple[str, bytes]) -> None:
    name, data = good_entry
    path = tmp_path / "opencl" / name
    path.parent.mkdir()
    path.write_bytes(data)
    assert _valid(path)
    assert _run(tmp_path)["origin"] == "disk"


_PROCESS_DAMAGE = ["empty", "truncated-in-header", "truncated-half", "one-byte-short",
                   "bit-flip-data-hash", "bit-flip-payload-start", "random-bits-1",
                   "random-bits-2", "zeroed", "garbage", "wrong-key", "wrong-version",
                   "raw-payload-without-header"]


@NO_OPENCL
@pytest.mark.parametrize("damage", _PROCESS_DAMAGE)
def test_damaged_entry_is_rebuilt_in_a_fresh_process(tmp_path: Path, damage: str,
                                                     good_entry: tuple[str, bytes]) -> None:
    name, data = good_entry
    key = name.removesuffix(".bin")
    if damage == "wrong-key":
        damaged = disk_cache.encode_entry("another key", data[H:])
    elif damage == "wrong-version":
        damaged = disk_cache.encode_entry(key, data[H:], disk_cache.FORMAT_VERSION + 1)
    else:
        damaged = DAMAGE[damage](data)
    path = tmp_path / "opencl" / name
    path.parent.mkdir()
    path.write_bytes(damaged)
    assert _run(tmp_path)["origin"] == "source"
    assert _entries(tmp_path) == [path] and _valid(path)  # rebuilt, and valid


@NO_OPENCL
def test_damaged_pocl_kernel_cache_cannot_poison_a_build(tmp_path: Path) -> None:
    """Fill PoCL's kernel cache (the user turned it on), truncate every kernel
    library in it, drop pullback's entry: the default settings never read PoCL's
    damaged files, so the rebuilt binary is sound."""
    pocl = tmp_path / "pocl"
    _run(tmp_path, POCL_KERNEL_CACHE="1", POCL_CACHE_DIR=str(pocl))
    libraries = list(pocl.rglob("*.so"))
    assert libraries, "PoCL kept no kernel libraries with its cache on"
    for lib in libraries:
        lib.write_bytes(lib.read_bytes()[:3000])
    for entry in _entries(tmp_path):
        entry.unlink()
    assert _run(tmp_path)["origin"] == "source"
    assert _run(tmp_path)["origin"] == "disk"


@NO_OPENCL
def test_entry_that_crashed_a_loading_process_is_rebuilt(tmp_path: Path,
                                                         good_entry: tuple[str, bytes]) -> None:
    """An intact entry whose loading marker outlived its process (the driver crashed
    while loading it) is deleted and rebuilt; a normal load leaves no marker."""
    name, data = good_entry
    path = tmp_path / "opencl" / name
    path.parent.mkdir()
    path.write_bytes(data)
    marker = path.with_name(f"{name}.loading.{_dead_pid()}.1")
    marker.touch()
    assert _run(tmp_path)["origin"] == "source"
    assert not marker.exists() and _valid(path)
    assert _run(tmp_path)["origin"] == "disk"
    assert sorted(p.name for p in path.parent.iterdir()) == [name]


@NO_OPENCL
def test_empty_cache_dir_keeps_no_binaries(tmp_path: Path) -> None:
    """`PULLBACK_CACHE_DIR=` (empty) turns the binary cache off: every process builds
    from source, and nothing appears in pullback's default folder; PoCL keeps its own."""
    for _ in range(2):
        result = _run(tmp_path / "unused", PULLBACK_CACHE_DIR="", HOME=str(tmp_path),
                      XDG_CACHE_HOME=str(tmp_path / ".cache"))
        assert result["origin"] == "source" and result["pocl_dir"] is None
    assert not (tmp_path / ".cache" / "pullback").exists()
    assert not (tmp_path / "unused").exists()
