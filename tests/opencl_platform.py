"""Whether an OpenCL platform exists here, and the mark for tests that need one.

A test that needs OpenCL is skipped, naming what to install, only where no platform
exists; CI sets PULLBACK_REQUIRE_OPENCL=1, so there a missing platform is a failure
(tests/conftest.py).
"""

import pytest


def _available() -> bool:
    try:
        from pullback.compiler.backends.opencl import available
    except ImportError:
        return False
    return available()


OPENCL = _available()
NO_OPENCL = pytest.mark.skipif(
    not OPENCL,
    reason="no OpenCL platform (pip install pocl-binary-distribution for a CPU device)")
