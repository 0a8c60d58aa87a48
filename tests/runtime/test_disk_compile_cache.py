"""The CPU disk compile cache, across fresh processes.

A cold process compiles five programs (a value, a gradient with a matrix product,
a Hessian, a training step that writes its input in place, a gradient through a
Python hook) and stores them; a warm process loads every one of them without
running the passes or LLVM and gets the same bits; damaged entries are deleted,
compiled again and stored again; `PULLBACK_CACHE_DIR=` (empty) and
`pb.set_disk_cache(False)` keep nothing; two processes filling one folder at once
leave only valid entries. Expected numbers come from the mathematics, in numpy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import pullback as pb
from pullback.compiler.backends import disk_cache

_PROGRAMS = """
    import hashlib, json, sys
    import numpy as np
    import pullback as pb
    from pullback import disk_compile_cache

    x = np.linspace(-1.5, 1.5, 12)
    w = np.linspace(0.5, 1.0, 12)
    A = np.cos(np.arange(36.0)).reshape(6, 6) / 3
    X = np.sin(np.arange(24.0)).reshape(4, 6)
    y = np.linspace(-1.0, 1.0, 4)

    def f(v, u):
        return pb.sum(pb.tanh(v) * u + v ** 2)

    def h(v):
        return pb.sum(pb.log(1.0 + pb.exp(A @ v))) + pb.sum(v ** 4) / 4

    def step(p, data, target):
        loss, (g,) = pb.withgradient(lambda q: pb.sum((data @ q - target) ** 2), p)
        p -= 0.1 * g
        return loss

    def hooked(v):
        return pb.sum(pb.sin(pb.hook(lambda g: 2 * g, v)) * v)

    compiled = {
        "value": pb.compile(f, x, w, mode="value"),
        "gradient": pb.compile(f, x, w, mode="withgradient"),
        "hessian": pb.compile(h, x[:6], mode="hessian"),
        "train": pb.compile(step, x[:6].copy(), X, y),
        "hook": pb.compile(hooked, x, mode="gradient"),
    }
    value, (gx, gw) = compiled["gradient"](x, w)
    p = x[:6].copy()
    losses = [float(compiled["train"](p, X, y)) for _ in range(2)]
    results = {
        "value": compiled["value"](x, w), "gx": gx, "gw": gw, "grad_value": value,
        "hessian": compiled["hessian"](x[:6]), "losses": np.array(losses), "trained": p,
        "hook": compiled["hook"](x)[0],
    }
    info = pb.cache_info()
    out = {
        "bits": {k: np.asarray(v).tobytes().hex() for k, v in results.items()},
        "numbers": {k: np.asarray(v).tolist() for k, v in results.items()},
        "timings": {k: sorted(c.timings) for k, c in compiled.items()},
        "peak_bytes": {k: c.memory.peak_bytes for k, c in compiled.items()},
        "disk": {k: getattr(info, k) for k in
                 ("disk_hits", "disk_misses", "disk_writes", "disk_rejected")},
        "environment": hashlib.sha256(
            repr(disk_compile_cache._environment()).encode()).hexdigest(),
    }
    if "--ir" in sys.argv:
        c = compiled["hessian"]
        out["stages"], out["llvm_ir"] = list(c.stages), c.llvm_ir
    print(json.dumps(out))
"""

N = 5
"""Programs `_PROGRAMS` compiles: one disk entry each."""

_HEADER = struct.Struct("<8sI32s32sQ")
"""An entry's header: magic, format version, key hash, payload hash, payload length."""


def _expected() -> dict[str, np.ndarray]:
    x, w = np.linspace(-1.5, 1.5, 12), np.linspace(0.5, 1.0, 12)
    A = np.cos(np.arange(36.0)).reshape(6, 6) / 3
    X = np.sin(np.arange(24.0)).reshape(4, 6)
    y = np.linspace(-1.0, 1.0, 4)
    v = x[:6]
    s = 1 / (1 + np.exp(-(A @ v)))
    p, losses = v.copy(), []
    for _ in range(2):
        r = X @ p - y
        losses.append(np.sum(r ** 2))
        p = p - 0.1 * 2 * X.T @ r
    value = np.sum(np.tanh(x) * w + x ** 2)
    return {
        "value": value, "grad_value": value, "gx": (1 - np.tanh(x) ** 2) * w + 2 * x,
        "gw": np.tanh(x), "hessian": A.T @ np.diag(s * (1 - s)) @ A + np.diag(3 * v ** 2),
        "losses": np.array(losses), "trained": p,
        "hook": 2 * np.cos(x) * x + np.sin(x),  # the hook doubles the path through sin
    }


def _env(cache: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "PULLBACK_CACHE_DIR": cache, **extra}


def _check_numbers(out: dict) -> None:
    for name, want in _expected().items():
        np.testing.assert_allclose(out["numbers"][name], want, rtol=1e-12, atol=1e-12,
                                   err_msg=name)


def _run(cache: str, *flags: str, **env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_PROGRAMS), *flags],
                          capture_output=True, text=True, timeout=300, env=_env(cache, **env))
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr[-3000:]}"
    out = json.loads(done.stdout.strip().splitlines()[-1])
    _check_numbers(out)
    return out


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "cpu").glob("*.bin"))


def _valid(path: Path) -> bool:
    """Whether `path` is a whole entry of the current format for the key its name is
    the hash of (an entry's file name and header both hold the key's sha256)."""
    data = path.read_bytes()
    if len(data) < disk_cache.HEADER_SIZE:
        return False
    magic, version, key_hash, data_hash, length = _HEADER.unpack_from(data)
    payload = data[disk_cache.HEADER_SIZE:]
    return (magic == disk_cache.MAGIC and version == disk_cache.FORMAT_VERSION
            and key_hash == bytes.fromhex(path.stem) and length == len(payload)
            and hashlib.sha256(payload).digest() == data_hash)


def _cold_then(folder: Path, then: Callable[[Path], dict]) -> tuple[dict, dict]:
    """A cold process filling `folder`, then `then(folder)`: what both printed.

    Keys hold a fingerprint of pullback's source files; if they changed between the
    two runs (edited meanwhile), the second saw other keys, so both run again."""
    for _ in range(3):
        shutil.rmtree(folder, ignore_errors=True)
        first = _run(str(folder))
        second = then(folder)
        if first["environment"] == second["environment"]:
            return first, second
    raise AssertionError("pullback's source files kept changing during the test")


def test_cold_process_compiles_and_stores_every_program(tmp_path: Path) -> None:
    cache, out = tmp_path, _run(str(tmp_path))
    assert out["disk"] == {"disk_hits": 0, "disk_misses": N, "disk_writes": N,
                           "disk_rejected": 0}
    assert all({"optimize", "jit"} <= set(t) for t in out["timings"].values())
    entries = _entries(cache)
    assert len(entries) == N and all(_valid(e) for e in entries)
    assert sorted(p.name for p in (cache / "cpu").iterdir()) == [e.name for e in entries]


def test_warm_process_loads_without_compiling_and_gives_the_same_bits(
        tmp_path: Path) -> None:
    first, out = _cold_then(tmp_path, lambda folder: _run(str(folder), "--ir"))
    assert out["disk"] == {"disk_hits": N, "disk_misses": 0, "disk_writes": 0,
                           "disk_rejected": 0}
    for name, timings in out["timings"].items():
        assert "load" in timings, name
        assert not {"autodiff", "fuse", "bufferize", "optimize", "jit"} & set(timings), name
    assert out["bits"] == first["bits"]
    assert out["peak_bytes"] == first["peak_bytes"]  # the memory plan came with the code
    # The stage texts of a loaded program are made when asked for.
    assert out["stages"][:7] == ["trace", "autodiff", "jvp", "bind-zeros", "vmap", "keep-results",
                                 "keep-functions"]   # the Hessian's passes
    assert "define" in out["llvm_ir"]


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x10
    return bytes(out)


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_damaged_entries_are_rebuilt(tmp_path: Path) -> None:
    """Each entry damaged another way (the last one intact but marked as having
    crashed a loader): none is loaded, each is compiled and stored again."""
    damages = [
        lambda d: d[:len(d) // 2],                                  # truncated
        lambda d: _flip(d, len(d) - 100),                           # a flipped bit
        lambda d: d[:8] + struct.pack("<I", disk_cache.FORMAT_VERSION + 1) + d[12:],
        lambda d: d[disk_cache.HEADER_SIZE:],                       # no header
        lambda d: d,                                                 # crashed a loader
    ]
    dead = _dead_pid()
    good: dict[str, bytes] = {}

    def damaged_run(folder: Path) -> dict:
        good.clear()
        for entry, damage in zip(_entries(folder), damages, strict=True):
            good[entry.name] = entry.read_bytes()
            entry.write_bytes(damage(good[entry.name]))
        (folder / "cpu" / f"{entry.name}.loading.{dead}.1").touch()
        return _run(str(folder))

    first, out = _cold_then(tmp_path, damaged_run)
    assert out["disk"] == {"disk_hits": 0, "disk_misses": 0, "disk_writes": N,
                           "disk_rejected": N}
    assert out["bits"] == first["bits"]
    entries = _entries(tmp_path)
    assert sorted(p.name for p in (tmp_path / "cpu").iterdir()) == sorted(good)  # no marker
    assert all(_valid(e) for e in entries)
    assert all(e.read_bytes() == good[e.name] for e in entries)  # compiled again the same


def test_empty_cache_dir_turns_the_cache_off(tmp_path: Path) -> None:
    """`PULLBACK_CACHE_DIR=` (empty): nothing read or written, not even in the default
    folder under the home directory."""
    home = tmp_path / "home"
    home.mkdir()
    out = _run("", HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    assert out["disk"] == {"disk_hits": 0, "disk_misses": 0, "disk_writes": 0,
                           "disk_rejected": 0}
    assert list(home.rglob("*")) == []


def test_api_switch_turns_the_cache_off(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULLBACK_CACHE_DIR", str(tmp_path))
    x = np.linspace(0.0, 1.0, 29)
    previous = pb.set_disk_cache(False)
    try:
        before = pb.cache_info()
        (g,) = pb.gradient(lambda v: pb.sum(pb.exp(v) * 3.0), x)
        after = pb.cache_info()
    finally:
        assert pb.set_disk_cache(previous) is False
    np.testing.assert_allclose(g, 3 * np.exp(x), rtol=1e-13)
    assert after.compiles == before.compiles + 1
    assert (after.disk_hits, after.disk_misses, after.disk_writes) == (
        before.disk_hits, before.disk_misses, before.disk_writes)
    assert list(tmp_path.rglob("*")) == []
    with pytest.raises(TypeError, match="True, False or None"):
        pb.set_disk_cache("no")  # type: ignore[arg-type]


def test_two_processes_filling_one_folder_leave_valid_entries(tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_PROGRAMS)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(str(tmp_path))) for _ in range(2)]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    for out in outs:
        _check_numbers(out)
        disk = out["disk"]
        assert disk["disk_rejected"] == 0 and disk["disk_hits"] + disk["disk_misses"] == N
    assert outs[0]["bits"] == outs[1]["bits"]
    entries = _entries(tmp_path)
    assert len(entries) == N and all(_valid(e) for e in entries)
    assert sorted(p.name for p in (tmp_path / "cpu").iterdir()) == [e.name for e in entries]


def _fresh_program(scale: float):
    """A function whose program no other test compiles (the scale is in its key)."""
    return lambda v: pb.sum(pb.exp(pb.tanh(v) * scale))


def test_loaded_program_makes_its_stage_texts_when_asked(disk_cache_dir: Path) -> None:
    x = np.linspace(-1.0, 1.0, 23)
    f = _fresh_program(1.75)
    compiled = pb.compile(f, x)
    stages, llvm_ir = dict(compiled.stages), compiled.llvm_ir
    pb.clear_caches()
    before = pb.cache_info()
    loaded = pb.compile(f, x)
    assert pb.cache_info().disk_hits == before.disk_hits + 1
    assert "load" in loaded.timings and "optimize" not in loaded.timings
    (g,) = loaded(x)
    t = np.tanh(x)
    np.testing.assert_allclose(g, np.exp(1.75 * t) * 1.75 * (1 - t ** 2), rtol=1e-13)
    assert dict(loaded.stages) == stages      # made now, by compiling once more
    assert loaded.ir("autodiff") == stages["autodiff"] and loaded.llvm_ir == llvm_ir


def test_printing_the_ir_bypasses_the_disk_cache(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str],
                                                 disk_cache_dir: Path) -> None:
    x = np.linspace(-1.0, 1.0, 19)
    f = _fresh_program(2.25)
    pb.compile(f, x)
    pb.clear_caches()
    monkeypatch.setenv("PULLBACK_PRINT_IR", "after-all")
    before = pb.cache_info()
    pb.compile(f, x)
    after = pb.cache_info()
    assert (after.disk_hits, after.disk_misses) == (before.disk_hits, before.disk_misses)
    err = capsys.readouterr().err
    assert "IR Dump After trace" in err and "IR Dump After convert-loops-to-llvm" in err
