"""Disk cache folders stay within `PULLBACK_CACHE_BYTES`: least recently used go first."""

import os
import time

import pytest

from pullback.compiler.backends import disk_cache


def _write(folder, name, size):
    path = folder / f"{name}.bin"
    assert disk_cache.write_entry(path, name, bytes(size))
    return path


def test_oldest_entries_are_pruned_past_the_limit(tmp_path, monkeypatch):
    entry = disk_cache.HEADER_SIZE + 1000
    monkeypatch.setenv("PULLBACK_CACHE_BYTES", str(3 * entry))
    paths = []
    for k in range(3):
        paths.append(_write(tmp_path, f"e{k}", 1000))
        os.utime(paths[-1], ns=(k * 10**9, k * 10**9))  # e0 oldest
    assert all(p.exists() for p in paths)
    assert disk_cache.read_entry(paths[0], "e0") == bytes(1000)  # e0 used: now the newest
    paths.append(_write(tmp_path, "e3", 1000))
    assert [p.exists() for p in paths] == [True, False, True, True]  # e1 was least recent
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 3 * entry


def test_an_entry_larger_than_the_limit_is_kept_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("PULLBACK_CACHE_BYTES", "1K")
    small = _write(tmp_path, "small", 10)
    time.sleep(0.01)
    big = _write(tmp_path, "big", 5000)
    assert big.exists() and not small.exists()


@pytest.mark.parametrize("text, expected", [("", disk_cache.DEFAULT_FOLDER_BYTES),
                                            ("2048", 2048), ("3K", 3072), ("5m", 5 << 20),
                                            ("1G", 1 << 30)])
def test_limit_from_the_environment(monkeypatch, text, expected):
    monkeypatch.setenv("PULLBACK_CACHE_BYTES", text)
    assert disk_cache.folder_limit() == expected


def test_a_bad_limit_says_what_is_accepted(monkeypatch):
    monkeypatch.setenv("PULLBACK_CACHE_BYTES", "lots")
    with pytest.raises(ValueError, match="PULLBACK_CACHE_BYTES='lots' is not a size"):
        disk_cache.folder_limit()
