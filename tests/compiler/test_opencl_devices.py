"""OpenCL device selection, the missing-platform error, fp64 checks and the
on-disk program cache (a second process builds from the stored binary)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opencl_platform import NO_OPENCL

from pullback.compiler.backends import opencl


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})


def test_no_platform_gives_a_clear_error() -> None:
    done = _python("""
        import sys
        import pullback, pullback.compiler.backends.llvm
        assert "pyopencl" not in sys.modules, "importing pullback imported pyopencl"
        from pullback.compiler.backends import opencl
        assert not opencl.available()
        try:
            opencl.select_device()
        except opencl.OpenCLUnavailableError as e:
            assert isinstance(e, RuntimeError)
            print(e)
    """, OCL_ICD_VENDORS="/nonexistent")
    assert done.returncode == 0, done.stderr
    assert "pip install pocl-binary-distribution" in done.stdout
    assert "OpenCL driver" in done.stdout


@NO_OPENCL
def test_device_selection() -> None:
    listed = opencl.list_devices()
    assert listed and listed[0].startswith("0:0 ")
    first = opencl.select_device("0:0")
    assert opencl.select_device("0") == first
    assert opencl.select_device(first.name[:6].upper()) == first
    assert opencl.select_device(None) is not None
    with pytest.raises(ValueError, match="no OpenCL device matches 'no-such-device'"):
        opencl.select_device("no-such-device")
    with pytest.raises(ValueError, match="devices: 0:0"):
        opencl.select_device("7:3")


@NO_OPENCL
def test_float64_without_fp64_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from test_opencl_kernels import module_of, tensor
    from xdsl.dialects.builtin import f64

    from pullback.compiler.backends.opencl import compile as compile_module
    from pullback.compiler.dialects import array as A

    monkeypatch.setattr(compile_module, "has_fp64", lambda device: False)
    module = module_of(lambda x: [A.NegOp(x).result], [tensor(f64, 3)])
    with pytest.raises(TypeError, match="float64.*cl_khr_fp64.*float32"):
        opencl.compile_function(module, "f")


_BUILD = """
    import json, sys
    import numpy as np
    sys.path[:0] = [{tests!r}, {root!r}]
    from test_opencl_kernels import module_of, tensor
    from xdsl.dialects.builtin import f32
    from pullback.compiler.backends import opencl
    from pullback.compiler.dialects import array as A
    module = module_of(lambda x, y: [A.MulOp(A.SinOp(x).result, y).result],
                       [tensor(f32, 1000), tensor(f32, 1000)])
    exe = opencl.compile_function(module, "f")
    x = np.linspace(-3, 3, 1000, dtype=np.float32)
    y = np.linspace(1, 2, 1000, dtype=np.float32)
    out = exe.run([x, y])[0]
    err = float(np.max(np.abs(out - np.sin(x.astype(np.float64)) * y)))
    print(json.dumps({{"origin": exe.build_origin, "build": exe.timings["build"], "err": err}}))
"""


@NO_OPENCL
def test_disk_cache_serves_a_second_process(tmp_path: Path) -> None:
    here = Path(__file__).parent
    code = _BUILD.format(tests=str(here), root=str(here.parent))
    env = {"PULLBACK_CACHE_DIR": str(tmp_path), "POCL_CACHE_DIR": str(tmp_path / "pocl")}
    runs = []
    for _ in range(2):
        done = _python(code, **env)
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert [r["origin"] for r in runs] == ["source", "disk"]
    assert all(r["err"] < 1e-5 for r in runs)
    assert len(list((tmp_path / "opencl").glob("*.bin"))) == 1
