"""The JSON manifest of a kernel library: what the loader and any binding generator read.

Schema (format_version 1):

    format            "pullback-kernel-library"
    format_version    1
    library           the name; every C symbol starts with "<library>_"
    pullback_version, llvm_version
    device            "cpu" or "opencl"
    target            {name, triple, cpu, features, required_features}
    shared_library, header, loader    file names, next to the manifest
    captured_values   "<library>.npz" with the captured inputs' values at export, or null
    context_bytes     what <library>_context_arena_bytes() returns
    entries           {entry name: {symbol, mode, inputs, outputs, memory}}
        inputs        [{name, dtype, shape, role, written, integers, description}] in C
                      order; `integers`: the values are integers (an index array) passed
                      in `dtype`
        outputs       [{name, dtype, shape, role, of, description}] in C order
        memory        the entry's memory report (peak_bytes, inputs, outputs, ...)

dtype is a numpy name (float64, float32, int64, bool); shape a list of ints ([] for a
scalar); role one of argument, captured, cotangent (inputs) and value, gradient,
jacobian, hessian, diaghessian (outputs); `of` names the input a derivative is taken
with respect to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pullback.compiler.export.entry import Array, ExportEntry

FORMAT = "pullback-kernel-library"
FORMAT_VERSION = 1


def _array(a: Array, output: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": a.name, "dtype": a.dtype.name, "shape": list(a.shape),
                           "role": a.role}
    if output:
        out["of"] = a.of
    else:
        out["written"] = a.written
        out["integers"] = a.integers
    out["description"] = a.description
    return out


def manifest(library: str, entries: Sequence[ExportEntry], *, device: str,
             target: dict[str, Any], versions: dict[str, str], context_bytes: int,
             captured_values: str | None) -> dict[str, Any]:
    """The manifest of `library` (see the module docstring)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library": library,
        **versions,
        "device": device,
        "target": target,
        "shared_library": f"lib{library}.so",
        "header": f"{library}.h",
        "loader": f"{library}.py",
        "captured_values": captured_values,
        "context_bytes": context_bytes,
        "entries": {
            e.name: {
                "symbol": f"{library}_{e.name}",
                "mode": e.mode,
                "inputs": [_array(a, False) for a in e.inputs],
                "outputs": [_array(a, True) for a in e.outputs],
                "memory": dict(e.memory),
            }
            for e in entries
        },
    }
