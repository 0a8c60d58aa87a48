"""Devices for tests that run programs: "cpu" always, "opencl" where a platform exists.

CI sets PULLBACK_REQUIRE_OPENCL=1, which turns a missing OpenCL platform into a
failure instead of a skip.
"""

import atexit
import os
import shutil
import tempfile

# The test session keeps pullback's disk caches (CPU code, OpenCL binaries) in a
# folder of its own, deleted at exit: tests never read or fill the user's cache.
# Set before anything imports pullback or initialises OpenCL.
_CACHE_DIR = tempfile.mkdtemp(prefix="pullback-test-cache-")
os.environ["PULLBACK_CACHE_DIR"] = _CACHE_DIR
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
