"""`pullback demo`: the loss goes down and the gradient check passes, on each device."""

import os
import re
import subprocess
import sys

from pullback.cli import main


def test_demo_trains_and_checks_its_gradient(capsys, device):
    assert main(["demo", "--steps", "120", "--device", device]) == 0
    out = capsys.readouterr().out
    losses = [float(v) for v in re.findall(r"loss (\d+\.\d+)", out)]
    assert losses[-1] < 0.8 * losses[0]
    err = float(re.search(r"max relative error (\S+)", out).group(1))
    assert err < 1e-5
    assert "time per step" in out and "compiled loss+gradient" in out


def test_opencl_without_a_platform_says_what_to_install():
    code = ("import numpy as np, pullback as pb\n"
            "pb.gradient(lambda x: x * x, 2.0)\n"          # the CPU needs no OpenCL
            "pb.gradient(lambda x: x * x, 2.0, device='opencl')\n")
    env = dict(os.environ, OCL_ICD_VENDORS="/nonexistent")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode != 0
    assert "pocl-binary-distribution" in run.stderr
