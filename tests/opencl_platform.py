"""Whether an OpenCL platform exists here, and the mark for tests that need one.

A test that needs OpenCL is skipped, naming what to install, only where no platform
exists; CI sets PULLBACK_REQUIRE_OPENCL=1, so there a missing platform is a failure
(tests/conftest.py).
"""

import os
from pathlib import Path

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


def opencl_environment() -> dict[str, str]:
    """The environment in which a C program sees the OpenCL platform pyopencl sees:
    pyopencl's bundled ICD loader and PoCL where it ships them, else the system's."""
    env = dict(os.environ)
    import pyopencl

    home = Path(pyopencl.__file__).parent
    libs = home / ".libs"
    loaders = sorted(libs.glob("libOpenCL*.so*"))
    if loaders:
        env["PULLBACK_OPENCL_LIBRARY"] = str(loaders[0])
        env["PYOPENCL_HOME"] = str(home)  # the bundled loader reads it
        icd = libs / "pocl.icd"
        if icd.exists():
            env["OCL_ICD_VENDORS"] = str(libs / icd.read_text().strip())
    return env
