"""Devices for tests that run programs: "cpu" always, "opencl" where a platform exists.

CI sets PULLBACK_REQUIRE_OPENCL=1, which turns a missing OpenCL platform into a
failure instead of a skip.
"""

import os

import pytest
from opencl_platform import NO_OPENCL, OPENCL

if os.environ.get("PULLBACK_REQUIRE_OPENCL") == "1" and not OPENCL:
    raise RuntimeError("PULLBACK_REQUIRE_OPENCL=1 but no OpenCL platform is available")

DEVICES = ["cpu", pytest.param("opencl", marks=NO_OPENCL)]


@pytest.fixture(params=DEVICES)
def device(request):
    """Each device in turn; tests that take it run once per device."""
    return request.param
