"""`pb.compile`: trace once, compile once, call many times; inspect every stage."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pullback import api, devices, pipeline
from pullback.program import STATIC, Program, input_array, trace_program
from pullback.pytree import flatten
from pullback.results import gradients, output_value

COMPILE_MODES = ("value", "gradient", "withgradient", "pullback")


class Compiled:
    """A function traced and compiled for one argument signature.

    Calling it runs native code without re-tracing. Arrays the function closes over
    are read at every call (in-place changes are seen). Attributes: `timings`
    (seconds per stage; `run` is the latest call), `stages` (MLIR text after each
    pass), `llvm_ir` or `opencl_source` (the generated code).
    """

    def __init__(self, f: Callable[..., Any], args: tuple[Any, ...], mode: str, device: str):
        if mode not in COMPILE_MODES:
            raise ValueError(
                f"unknown mode '{mode}'; accepted modes: {', '.join(COMPILE_MODES)}")
        self.mode = mode
        self.device = device
        t0 = time.perf_counter()
        self.program: Program = trace_program(f, args)
        trace_time = time.perf_counter() - t0
        leaves, _ = flatten(tuple(args))
        self._signature = _signature(self.program, leaves)
        self._static = [leaf if k == STATIC else None
                        for leaf, k in zip(leaves, self.program.in_kinds)]
        self._cts: tuple[int, ...] = ()
        if mode in ("gradient", "withgradient"):
            primary = api._primary_result(self.program, mode)
            core_mode = "gradient" if primary is not None else "value"
            self._cts = (primary,) if primary is not None else ()
        elif mode == "pullback":
            core_mode = "pullback"
            types = self.program.result_types()
            self._types = types
            self._cts = tuple(i for i, (_, dt) in enumerate(types) if dt.kind == "f")
        else:
            core_mode = "value"
        t0 = time.perf_counter()
        self._built = pipeline.compiled(self.program, core_mode, device, keep_ir=True,
                                        cotangents=self._cts)
        self._value = (pipeline.compiled(self.program, "value", device, keep_ir=True)
                       if mode == "pullback" else None)
        self.timings: dict[str, float] = {"trace": trace_time,
                                          "compile": time.perf_counter() - t0}
        self.timings.update(self._built.timings)

    @property
    def stages(self) -> dict[str, str]:
        """MLIR text after each stage, in pipeline order."""
        return dict(self._built.stages)

    @property
    def code(self) -> str:
        """The generated target code: LLVM IR ("cpu") or OpenCL C ("opencl")."""
        return pipeline.target_code(self._built.executable)

    @property
    def llvm_ir(self) -> str:
        """The optimised LLVM IR of the native entry point (device "cpu")."""
        ir = getattr(self._built.executable, "llvm_ir", None)
        if ir is None:
            raise AttributeError(
                f"no LLVM IR: compiled for device '{self.device}'; see .opencl_source")
        return ir

    @property
    def opencl_source(self) -> str:
        """The generated OpenCL C program (an "opencl" device)."""
        src = getattr(self._built.executable, "opencl_source", None)
        if src is None:
            raise AttributeError(
                f"no OpenCL source: compiled for device '{self.device}'; see .llvm_ir")
        return src

    def ir(self, stage: str = "simplify") -> str:
        """MLIR text after `stage` (one of `stages`)."""
        if stage not in self._built.stages:
            raise KeyError(f"no stage '{stage}'; stages: {', '.join(self._built.stages)}")
        return self._built.stages[stage]

    def _inputs(self, args: tuple[Any, ...]) -> tuple[list[Any], list[np.ndarray]]:
        leaves, tree = flatten(tuple(args))
        if tree != self.program.in_tree or _signature(self.program, leaves) != self._signature:
            raise TypeError(
                "this compiled function was made for arguments with signature "
                f"{self._signature}, got {_signature(self.program, leaves)}; call "
                "pb.compile again for new shapes, dtypes or structure")
        for leaf, static in zip(leaves, self._static):
            if static is not None and leaf is not static and leaf != static:
                raise TypeError(
                    f"a non-array argument changed from {static!r} to {leaf!r}; "
                    "call pb.compile again")
        return leaves, self.program.arguments(leaves)

    def __call__(self, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._call(args)
        finally:
            self.timings["run"] = time.perf_counter() - start

    def _call(self, args: tuple[Any, ...]) -> Any:
        leaves, inputs = self._inputs(args)
        if self.mode == "pullback":
            assert self._value is not None
            y = output_value(self.program, self._value.run(inputs))
            built, program, types, cts = self._built, self.program, self._types, self._cts

            def back(dy: Any) -> tuple[Any, ...]:
                outs = built.run(inputs + api._cotangents(program, dy, types, cts))
                return gradients(program, leaves, built.grad_args, outs[built.num_results:])

            return y, back
        outs = self._built.run(inputs)
        n = self._built.num_results
        if self.mode == "value":
            return output_value(self.program, outs)
        grads = gradients(self.program, leaves, self._built.grad_args, outs[n:])
        if self.mode == "gradient":
            return grads
        return api.WithGradient(output_value(self.program, outs[:n]), grads)


def _signature(program: Program, leaves: list[Any]) -> tuple[Any, ...]:
    sig = []
    for leaf, kind in zip(leaves, program.in_kinds):
        if kind == STATIC:
            sig.append(kind)
        else:
            arr = input_array(leaf, kind)
            sig.append((kind, arr.shape, str(arr.dtype)))
    return tuple(sig)


def compile(f: Callable[..., Any], *example_args: Any, mode: str = "gradient",  # noqa: A001
            device: str | None = None) -> Compiled:
    """Trace and compile `f` for arguments like `example_args`.

    Args:
      f: the function.
      *example_args: arguments fixing shapes, dtypes and structure.
      mode: "value" (f itself), "gradient", "withgradient" or "pullback" (calls return
        what `pb.value`/`pb.gradient`/`pb.withgradient`/`pb.pullback` would).
      device: "cpu" by default.

    Returns:
      A `Compiled` object; call it with new arguments of the same signature.
    """
    return Compiled(f, example_args, mode, devices.resolve(device))
