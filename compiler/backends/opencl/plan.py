"""The host schedule of a lowered module → one OpenCL program and a launch plan.

The host function's body (`memref.cast`, `arith.constant`, `func.call`) is read
once: each call to a kernel function becomes its launches, each call to
`pullback_matmul_<T>` a product kernel launch, each call to `pullback_host_call_<T>`
a `HostCall` step (the executable reads the buffer back, calls Python, writes the
result and goes on). Buffers are named by the host argument they alias (inputs,
outputs, temporaries in order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import (
    FloatAttr,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    f64,
)
from xdsl.ir import Attribute, SSAValue

from pullback.compiler.backends.opencl.kernels import Launch, Target, translate_kernel
from pullback.compiler.backends.opencl.matmul import matmul_launch, matmul_source
from pullback.compiler.backends.opencl.ops import PRELUDE
from pullback.compiler.dialects.kernel import HOST_CALL_PREFIX

MATMUL_PREFIX = "pullback_matmul_"


@dataclass(frozen=True)
class Step:
    """One launch and its arguments: buffer indices (int) or numpy scalars."""

    launch: Launch
    args: tuple[int | np.generic, ...]


@dataclass(frozen=True)
class HostCall:
    """A host call step: buffer `src` (`n` elements of `dtype`) to host function `slot`
    of the callback table whose token is in buffer `table`; the result into `dst`."""

    table: int
    slot: int
    unreached: bool
    n: int
    src: int
    dst: int
    dtype: np.dtype


def _scalar(value: SSAValue) -> np.generic:
    owner = value.owner
    if not isinstance(owner, arith.ConstantOp):
        raise NotImplementedError(f"host scalar argument must be a constant, got {owner}")
    t, attr = value.type, owner.value
    if isinstance(attr, FloatAttr):
        return (np.float64 if t == f64 else np.float32)(attr.value.data)
    assert isinstance(attr, IntegerAttr)
    width = getattr(t, "width", None)
    return np.int32(attr.value.data) if width is not None and width.data == 32 else np.int64(
        attr.value.data)


def uses_float64(module: ModuleOp) -> bool:
    """Whether any kernel-level value or buffer is float64."""
    def is64(t: Attribute) -> bool:
        return t == f64 or (isinstance(t, MemRefType) and t.element_type == f64)
    for op in module.walk():
        if any(is64(r.type) for r in op.results):
            return True
        for region in op.regions:
            if any(is64(a.type) for block in region.blocks for a in block.args):
                return True
    return False


class _Reader:
    """Reads the host schedule into calls over buffer indices."""

    def __init__(self, host: func.FuncOp):
        self.buffers: dict[SSAValue, int] = {a: i for i, a in enumerate(host.body.block.args)}
        self.calls: list[tuple[str, list[SSAValue]]] = []
        for op in host.body.block.ops:
            match op:
                case memref.CastOp():
                    self.buffers[op.dest] = self.buffer(op.source)
                case arith.ConstantOp() | func.ReturnOp():
                    pass
                case func.CallOp():
                    self.calls.append((op.callee.string_value(), list(op.arguments)))
                case _:
                    raise NotImplementedError(
                        f"the OpenCL backend cannot run '{op.name}' in a host schedule")

    def buffer(self, value: SSAValue) -> int:
        if value not in self.buffers:
            raise NotImplementedError(f"host value {value} is not a buffer argument")
        return self.buffers[value]

    def arg(self, value: SSAValue) -> int | np.generic:
        return self.buffer(value) if isinstance(value.type, MemRefType) else _scalar(value)

    def restrict(self, callee: str) -> set[int]:
        """Parameters never aliased with another parameter at any call site."""
        out: set[int] | None = None
        for name, args in self.calls:
            if name != callee:
                continue
            bufs = [self.buffers.get(a) for a in args]
            ok = {i for i, b in enumerate(bufs) if b is not None and bufs.count(b) == 1}
            out = ok if out is None else out & ok
        return out or set()


def translate_module(module: ModuleOp, name: str,
                     target: Target) -> tuple[str, list[Step | HostCall]]:
    """The program source and the launch plan of host function `@name`."""
    funcs = {op.sym_name.data: op for op in module.body.block.ops if isinstance(op, func.FuncOp)}
    reader = _Reader(funcs[name])
    codes: dict[str, str] = {}
    matmuls: dict[str, str] = {}
    steps: list[Step | HostCall] = []
    for callee, args in reader.calls:
        if callee.startswith(MATMUL_PREFIX):
            steps += _matmul(reader, callee, args, target, matmuls)
            continue
        if callee.startswith(HOST_CALL_PREFIX):
            steps.append(_host_call(reader, callee, args))
            continue
        if callee not in funcs or funcs[callee].is_declaration:
            raise NotImplementedError(f"the OpenCL backend has no kernel for call @{callee}")
        code = translate_kernel(funcs[callee], target, reader.restrict(callee))
        codes.setdefault(callee, code.source)
        values = tuple(reader.arg(a) for a in args)
        steps += [Step(launch, values) for launch in code.launches
                  if all(g > 0 for g in launch.global_size)]
    header = [f"/* pullback: @{name} for an OpenCL {target.style} device */"]
    if uses_float64(module):
        header.append("#pragma OPENCL EXTENSION cl_khr_fp64 : enable")
    source = "\n".join([*header, PRELUDE, *codes.values(), *matmuls.values()])
    return source, steps


def _matmul(reader: _Reader, callee: str, args: list[SSAValue], target: Target,
            sources: dict[str, str]) -> list[Step]:
    element = callee[len(MATMUL_PREFIX):]
    if element not in ("f64", "f32") or len(args) != 9:
        raise NotImplementedError(f"unknown matrix-product call @{callee}")
    a, b, c = (reader.buffer(v) for v in args[:3])
    batch, m, n, k, ta, tb = (int(_scalar(v)) for v in args[3:])
    launch = matmul_launch(element, bool(ta), bool(tb), target.style, batch, m, n)
    sources.setdefault(launch.kernel, matmul_source(element, bool(ta), bool(tb), target.style))
    if min(batch, m, n) <= 0:
        return []
    return [Step(launch, (a, b, c, np.int64(m), np.int64(n), np.int64(k)))]


def _host_call(reader: _Reader, callee: str, args: list[SSAValue]) -> HostCall:
    element = callee[len(HOST_CALL_PREFIX):]
    if element not in ("f64", "f32") or len(args) != 6:
        raise NotImplementedError(f"unknown host call @{callee}")
    slot, unreached, n = (int(_scalar(v)) for v in args[1:4])
    dtype = np.dtype(np.float64 if element == "f64" else np.float32)
    return HostCall(reader.buffer(args[0]), slot, bool(unreached), n, reader.buffer(args[4]),
                    reader.buffer(args[5]), dtype)
