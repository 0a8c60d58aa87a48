"""OpenCL device discovery and selection; pyopencl is imported only when asked for.

`select_device(spec)` takes None (a GPU if any, else the first device), "P" or
"P:D" (platform / device indices, as `list_devices()` numbers them), or a
case-insensitive piece of the platform or device name.
"""

from __future__ import annotations

import re
import threading
from types import ModuleType
from typing import Any

from pullback.compiler.backends.opencl import pocl_cache

INSTALL_HINT = (
    'install an OpenCL driver: `pip install pocl-binary-distribution` (or '
    '`pip install "pyopencl[pocl]"`) gives a CPU device; for a GPU install its '
    "vendor's OpenCL driver"
)


class OpenCLUnavailableError(RuntimeError):
    """No usable OpenCL: pyopencl missing, or no platform / device found."""


PIP_HINT = '`pip install "pullback[opencl]"` (pyopencl and PoCL, a CPU device)'


def cl() -> ModuleType:
    """The pyopencl module, or OpenCLUnavailableError saying how to install it.

    A `pyopencl` folder without the module in it (`pocl-binary-distribution` ships one)
    imports as an empty namespace package; that is reported as pyopencl missing too.
    """
    pocl_cache.isolate()  # before the platform is initialised
    try:
        import pyopencl
    except ImportError as e:
        raise OpenCLUnavailableError(f"pyopencl is not installed ({e}); {PIP_HINT}") from e
    if not hasattr(pyopencl, "get_platforms"):
        where = ", ".join(getattr(pyopencl, "__path__", [])) or "sys.path"
        raise OpenCLUnavailableError(
            f"pyopencl is not installed: the only 'pyopencl' found is a folder without the "
            f"module ({where}; pocl-binary-distribution installs one); {PIP_HINT}")
    return pyopencl


def _devices() -> list[tuple[int, int, Any]]:
    ocl = cl()
    try:
        platforms = ocl.get_platforms()
    except ocl.Error as e:
        raise OpenCLUnavailableError(f"no OpenCL platform found ({e}); {INSTALL_HINT}") from e
    found = []
    for pi, platform in enumerate(platforms):
        try:
            devices = platform.get_devices()
        except ocl.Error:
            continue
        found += [(pi, di, d) for di, d in enumerate(devices)]
    if not found:
        raise OpenCLUnavailableError(f"no OpenCL device found; {INSTALL_HINT}")
    return found


def is_gpu(device: Any) -> bool:
    return bool(device.type & cl().device_type.GPU)


def has_fp64(device: Any) -> bool:
    return "cl_khr_fp64" in device.extensions.split() or bool(
        getattr(device, "double_fp_config", 0))


def describe(device: Any) -> str:
    kind = "GPU" if is_gpu(device) else "CPU" if device.type & cl().device_type.CPU else "other"
    return f"{device.platform.name.strip()} / {device.name.strip()} ({kind})"


def available() -> bool:
    """Whether pyopencl is installed and sees at least one device."""
    try:
        _devices()
    except OpenCLUnavailableError:
        return False
    return True


def list_devices() -> list[str]:
    """Every device as "P:D platform / device (kind)"."""
    return [f"{pi}:{di} {describe(d)}" for pi, di, d in _devices()]


def select_device(spec: str | None = None) -> Any:
    """The `pyopencl.Device` that `spec` names (see the module docstring)."""
    devices = _devices()
    if spec is None or not spec.strip():
        gpus = [d for _, _, d in devices if is_gpu(d)]
        return gpus[0] if gpus else devices[0][2]
    spec = spec.strip()
    m = re.fullmatch(r"(\d+)(?::(\d+))?", spec)
    if m:
        pi, di = int(m.group(1)), int(m.group(2) or 0)
        for p, d, dev in devices:
            if (p, d) == (pi, di):
                return dev
    else:
        low = spec.lower()
        for _, _, dev in devices:
            if low in dev.name.lower() or low in dev.platform.name.lower():
                return dev
    listing = "; ".join(f"{pi}:{di} {describe(d)}" for pi, di, d in devices)
    raise ValueError(f"no OpenCL device matches '{spec}' (devices: {listing})")


_CONTEXTS: dict[int, Any] = {}
_LOCK = threading.Lock()


def context_for(device: Any) -> Any:
    """One shared `pyopencl.Context` per device."""
    with _LOCK:
        key = device.int_ptr
        if key not in _CONTEXTS:
            _CONTEXTS[key] = cl().Context([device])
        return _CONTEXTS[key]
