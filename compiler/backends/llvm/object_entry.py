"""CPU executables as bytes and back: the object file and what `LLVMExecutable` needs.

A payload is `u64 n` (little-endian), then `n` bytes of description (JSON, UTF-8),
then the object file. The description holds the function's signature (dtypes and
shapes of its inputs and outputs, the inputs it writes), its memory plan, whether it
makes host calls and which inputs a failing call restores, the `pullback_*` symbols
to bind before loading, and what the caller adds (`extra`, JSON too). Nothing but
the object file's machine code is ever run, and only from a checked disk entry
(`pullback.compiler.backends.disk_cache`); a description that is not exactly as
written here raises `EntryError`, so a caller discards the entry.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from xdsl.dialects.builtin import TensorType, f32, f64, i1, i64
from xdsl.ir import Attribute

from pullback.compiler.backends.kernel_level import InputSpec
from pullback.compiler.backends.llvm import blas, jit
from pullback.compiler.backends.llvm.executable import LLVMExecutable
from pullback.compiler.backends.llvm.host_calls import bind_host_call_symbol
from pullback.compiler.dialects.kernel import HOST_CALL_PREFIX
from pullback.compiler.transforms.memory_plan import MemoryPlan

FORMAT = 1
"""Version of the description; part of every disk key, so a change gets new entries."""

_LENGTH = struct.Struct("<Q")
_ELEMENTS: dict[str, Attribute] = {"float64": f64, "float32": f32, "int64": i64, "bool": i1}
_BLAS = {"pullback_dgemm": "dgemm", "pullback_sgemm": "sgemm"}


class EntryError(ValueError):
    """A payload that is not a description and object file as `dumps` writes them."""


def dumps(exe: LLVMExecutable, obj: bytes, extra: dict[str, Any]) -> bytes:
    """The payload of `exe`, whose machine code is the object file `obj`."""
    spec = exe.spec
    description = {
        "format": FORMAT,
        "name": spec.name,
        "inputs": [[np.dtype(d).name, list(s)] for d, s in spec.inputs],
        "outputs": [[np.dtype(d).name, list(s)] for d, s in spec.outputs],
        "written": list(spec.written),
        "plan": dataclasses.asdict(exe.plan),
        "host_calls": exe.host_calls,
        "undo_inputs": list(exe.undo_inputs),
        "symbols": list(exe.symbols),
        "extra": extra,
    }
    text = json.dumps(description, separators=(",", ":")).encode()
    return _LENGTH.pack(len(text)) + text + obj


def loads(payload: bytes,
          llvm_ir: Callable[[], str]) -> tuple[LLVMExecutable, dict[str, Any]]:
    """The executable a payload describes, its machine code loaded into a new engine,
    and the payload's `extra`; `llvm_ir` makes the IR text if someone asks for it."""
    start = time.perf_counter()
    description, obj = _split(payload)
    try:
        spec = InputSpec(_text(description["name"]), _arrays(description["inputs"]),
                         _arrays(description["outputs"]), _ints(description["written"]))
        plan = _plan(description["plan"])
        host_calls, extra = description["host_calls"], description["extra"]
        symbols = tuple(_text(s) for s in _list(description["symbols"]))
        undo_inputs = _ints(description["undo_inputs"])
    except (KeyError, TypeError) as e:
        raise EntryError(f"the description lacks or mistypes a field: {e}") from e
    if not isinstance(host_calls, bool) or not isinstance(extra, dict):
        raise EntryError("the description's host_calls or extra has the wrong type")
    for symbol in symbols:
        _bind(symbol)
    engine = jit.load_object(obj, jit.host_target_machine())
    exe = LLVMExecutable(spec, [_tensor(d, s) for d, s in spec.inputs],
                         [_tensor(d, s) for d, s in spec.outputs], plan, engine, llvm_ir, {},
                         {"load": time.perf_counter() - start}, host_calls=host_calls,
                         undo_inputs=undo_inputs, symbols=symbols)
    return exe, extra


def _split(payload: bytes) -> tuple[dict[str, Any], bytes]:
    if len(payload) < _LENGTH.size:
        raise EntryError("the payload is shorter than its length field")
    (n,) = _LENGTH.unpack_from(payload)
    end = _LENGTH.size + n
    if end >= len(payload):
        raise EntryError("the payload holds no object file after its description")
    try:
        description = json.loads(payload[_LENGTH.size:end].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EntryError(f"the description is not JSON: {e}") from e
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise EntryError(f"the description is not of format {FORMAT}")
    return description, payload[end:]


def _bind(symbol: str) -> None:
    """Make a `pullback_*` symbol the machine code calls resolvable."""
    if symbol.startswith(HOST_CALL_PREFIX):
        bind_host_call_symbol(symbol)
    elif symbol in _BLAS:
        blas.bind_blas_symbol(_BLAS[symbol])
    else:
        raise EntryError(f"the object file calls an unknown symbol {symbol!r}")


def _tensor(dtype: np.dtype, shape: tuple[int, ...]) -> TensorType:
    return TensorType(_ELEMENTS[dtype.name], shape)


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _ints(value: object) -> tuple[int, ...]:
    items = _list(value)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items):
        raise TypeError("expected whole numbers >= 0")
    return tuple(items)


def _arrays(value: object) -> list[tuple[np.dtype, tuple[int, ...]]]:
    out = []
    for item in _list(value):
        dtype, shape = _list(item)
        if _text(dtype) not in _ELEMENTS:
            raise TypeError(f"unknown dtype {dtype!r}")
        out.append((np.dtype(dtype), _ints(shape)))
    return out


def _plan(value: object) -> MemoryPlan:
    if not isinstance(value, dict):
        raise TypeError("the memory plan is not an object")
    intervals = tuple(_ints(i) for i in _list(value["intervals"]))
    if any(len(i) != 2 for i in intervals):
        raise TypeError("a live interval is not a pair of steps")
    plan = MemoryPlan(_ints(value["sizes"]), intervals,  # type: ignore[arg-type]
                      _ints(value["offsets"]), _ints([value["arena_bytes"]])[0],
                      _ints([value["alignment"]])[0],
                      tuple(_text(k) for k in _list(value["kinds"])))
    n = len(plan.sizes)
    if len(plan.offsets) != n or len(plan.intervals) != n or any(
            o + s > plan.arena_bytes for o, s in zip(plan.offsets, plan.sizes, strict=True)):
        raise TypeError("the memory plan's offsets do not fit its arena")
    return plan
