"""Devices for tests that run programs: "cpu" always, "opencl" where a platform exists.

CI sets PULLBACK_REQUIRE_OPENCL=1, which turns a missing OpenCL platform into a
failure instead of a skip.
"""

import atexit
import os
import shutil
import tempfile

# The test session keeps no disk cache (CPU code, OpenCL binaries): tests never read
# or fill the user's cache, every test compiles what it runs, and no time goes into
# writing entries. The tests of the disk caches turn them on in a folder of their
# own (`disk_cache_dir`). Set before anything imports pullback or initialises OpenCL.
os.environ["PULLBACK_CACHE_DIR"] = ""
_CACHE_DIR = tempfile.mkdtemp(prefix="pullback-test-cache-")
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)

import pytest  # noqa: E402
from opencl_platform import NO_OPENCL, OPENCL  # noqa: E402

if os.environ.get("PULLBACK_REQUIRE_OPENCL") == "1" and not OPENCL:
    raise RuntimeError("PULLBACK_REQUIRE_OPENCL=1 but no OpenCL platform is available")

DEVICES = ["cpu", pytest.param("opencl", marks=NO_OPENCL)]


@pytest.fixture(params=DEVICES)
def device(request):
    """Each device in turn; tests that take it run once per device."""
    return request.param


@pytest.fixture
def disk_cache_dir(monkeypatch, tmp_path):
    """Turn pullback's disk caches on, in a fresh folder, for one test."""
    from pullback.compiler.backends import disk_cache

    monkeypatch.setenv("PULLBACK_CACHE_DIR", str(tmp_path / "cache"))
    previous = disk_cache.set_enabled(None)
    yield tmp_path / "cache"
    disk_cache.set_enabled(previous)
