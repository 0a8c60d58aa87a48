"""Choosing a device: argument, context manager, PULLBACK_DEVICE; bad names."""

import os
import subprocess
import sys

import numpy as np
import pytest
from opencl_platform import NO_OPENCL

import pullback as pb


@NO_OPENCL
def test_argument_and_context_manager_pick_opencl():
    f = lambda x: pb.sum(pb.exp(x))  # noqa: E731
    x = np.linspace(0.0, 1.0, 4)
    assert "__kernel" in pb.compile(f, x, device="opencl").opencl_source
    with pb.device("opencl"):
        c = pb.compile(f, x)
        with pb.device("cpu"):
            assert "define" in pb.compile(f, x).llvm_ir
    assert c.device == "opencl" and "__kernel" in c.code
    np.testing.assert_allclose(c(x)[0], np.exp(x), rtol=1e-13)


@NO_OPENCL
def test_environment_variable_selects_the_device():
    code = ("import numpy as np, pullback as pb\n"
            "c = pb.compile(lambda x: pb.sum(x * x), np.ones(3))\n"
            "print(c.device, '__kernel' in c.code)\n")
    env = dict(os.environ, PULLBACK_DEVICE="opencl")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert out.split() == ["opencl", "True"]


@NO_OPENCL
def test_platform_and_device_by_index_and_name():
    x = np.ones(3)
    for spec in ("opencl:0", "opencl:0:0", "opencl:portable"):
        assert pb.gradient(lambda v: pb.sum(v * v), x, device=spec)[0].tolist() == [2.0] * 3
    with pytest.raises(ValueError, match="no OpenCL device matches"):
        pb.gradient(lambda v: pb.sum(v), x, device="opencl:no-such-device")


def test_unknown_device_names_what_is_accepted():
    with pytest.raises(ValueError, match="'cpu', 'opencl'"):
        with pb.device("gpu"):
            pass
