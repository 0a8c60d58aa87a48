"""`pb.compile`: trace once, compile once, call many times; inspect every stage."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from xdsl.dialects.builtin import TensorType

from pullback import api, devices, jacobians, mode_pipeline, pipeline, signatures
from pullback.compiler.backends.kernel_level import numpy_dtype
from pullback.compiler.located_stages import located_stages
from pullback.compiler.transforms.memory_plan import MemoryReport
from pullback.dsl.pytree import flatten
from pullback.params import Params
from pullback.program import Program, trace_program
from pullback.results import gradients, output_value

COMPILE_MODES = ("value", "gradient", "withgradient", "pullback", "jacobian", "withjacobian",
                 "hessian", "hessian_reverse", "diaghessian")
BATCHED_MODES = COMPILE_MODES[4:]
"""Modes computed by a `JacobianCall` or `SecondDerivativeCall` (one native call)."""


class Compiled:
    """A function traced and compiled for one argument signature.

    Calling it runs native code without re-tracing. Arrays the function closes over
    are read at every call (in-place changes are seen). Attributes: `timings`
    (seconds per stage; `run` is the latest call), `stages` (MLIR text after each
    pass), `llvm_ir` or `opencl_source` (the generated code).
    """

    _located: dict[str, str] | None = None
    """The stage texts with source locations, once `ir(..., locations=True)` made them."""

    def __init__(self, f: Callable[..., Any], args: tuple[Any, ...], mode: str | None,
                 device: str, passes: mode_pipeline.PassInsertions | None = None):
        if mode is not None and mode not in COMPILE_MODES:
            raise ValueError(
                f"unknown mode '{mode}'; accepted modes: {', '.join(COMPILE_MODES)}")
        self.device = device
        self.insertions = mode_pipeline.insertions_of(passes)
        """The passes inserted into the mode's pipeline, checked (`passes=`)."""
        self.function = f
        """The function compiled (kept for `pb.export`, which names captured arrays)."""
        if mode in BATCHED_MODES:
            self.mode = mode
            self._init_batched(f, args)
            return
        self._plan: Any = None
        t0 = time.perf_counter()
        # Integer array arguments are int64 in value mode and float64-carried where
        # differentiated; without a mode, whether f writes its inputs decides.
        differentiate = mode != "value" and not (mode is None and _has_integer_arrays(args))
        self.program: Program = trace_program(f, args, differentiate=differentiate)
        if mode is None:
            mode = "value" if self.program.writes_inputs else "gradient"
            if mode == "gradient" and not differentiate:
                self.program = trace_program(f, args)
        trace_time = time.perf_counter() - t0
        self.mode = mode
        self._remember_signature(args, signatures.ArgumentNames.of(f))
        self._cts: tuple[int, ...] = ()
        if mode in ("gradient", "withgradient"):
            primary = api._primary_result(self.program, mode)
            core_mode = "gradient" if primary is not None else "value"
            self._cts = (primary,) if primary is not None else ()
        elif mode == "pullback":
            self.program.check_runs_once('pb.compile(..., mode="pullback")')
            core_mode = "pullback"
            types = self.program.result_types()
            self._types = types
            self._cts = tuple(i for i, (_, dt) in enumerate(types) if dt.kind == "f")
        else:
            core_mode = "value"
        t0 = time.perf_counter()
        self._built = pipeline.compiled(self.program, core_mode, device, keep_ir=True,
                                        cotangents=self._cts, insertions=self.insertions)
        self._value = (pipeline.compiled(self.program, "value", device, keep_ir=True,
                                         insertions=self.insertions)
                       if mode == "pullback" else None)
        self.timings: dict[str, float] = {"trace": trace_time,
                                          "compile": time.perf_counter() - t0}
        self.timings.update(self._built.timings)

    def _init_batched(self, f: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """Jacobian and Hessian modes: the traced, compiled call of `jacobians`."""
        t0 = time.perf_counter()
        if self.mode in ("jacobian", "withjacobian"):
            self._plan = jacobians.JacobianCall(f, args, self.device, self.mode, keep_ir=True,
                                                insertions=self.insertions)
        else:
            if self.mode != "diaghessian":
                if len(args) != 1:
                    raise TypeError(f"{self.mode} takes one argument x, got {len(args)}")
                jacobians.check_hessian_argument(args[0], self.mode)
            core = "hessian_reverse" if self.mode == "hessian_reverse" else "hessian"
            self._plan = jacobians.SecondDerivativeCall(f, args, self.device, core, self.mode,
                                                        keep_ir=True, insertions=self.insertions)
        self.program = self._plan.traced.program
        free = ([] if getattr(self._plan, "params", None) is not None
                else self._plan.traced.free_positions())
        self._remember_signature(self._free_args(args),
                                 signatures.ArgumentNames.of(f).picked(free))
        self.timings = {"compile": time.perf_counter() - t0}
        built = self._plan.built
        self.timings.update(built.timings if built is not None else {})
        self._built = built

    def _remember_signature(self, args: tuple[Any, ...],
                            names: signatures.ArgumentNames) -> None:
        leaves, _ = flatten(tuple(args))
        self._expected = signatures.Expected.of(self.program.in_tree, names,
                                                self.program.in_kinds, leaves)

    def _free_args(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        params = getattr(self._plan, "params", None)
        if params is None:
            return self._plan.traced.free_args(args)
        if len(args) != 1 or not isinstance(args[0], Params) or args[0] is not params:
            raise TypeError("this compiled function was made for one pb.Params; call it "
                            "with that same Params object")
        return ()

    @property
    def _compiled(self) -> pipeline.Built:
        if self._built is None:
            raise AttributeError("nothing was compiled: the output is a constant, or has no "
                                 "derivative with respect to the arguments")
        return self._built

    @property
    def stages(self) -> dict[str, str]:
        """MLIR text after each stage, in pipeline order: `trace` (the traced module),
        then one per pass, keyed by the pass's name (`name#k` for its k-th run)."""
        return {} if self._built is None else dict(self._built.stages)

    @property
    def pipeline(self) -> str:
        """The pass pipeline text this mode runs on the traced module (`stages["trace"]`):
        `pullback opt traced.mlir -p "<pipeline>"` gives the last stage's text."""
        return self._compiled.pipeline

    @property
    def code(self) -> str:
        """The generated target code: LLVM IR ("cpu") or OpenCL C ("opencl")."""
        return pipeline.target_code(self._compiled.executable)

    @property
    def llvm_ir(self) -> str:
        """The optimised LLVM IR of the native entry point (device "cpu")."""
        ir = getattr(self._compiled.executable, "llvm_ir", None)
        if ir is None:
            raise AttributeError(
                f"no LLVM IR: compiled for device '{self.device}'; see .opencl_source")
        return ir

    @property
    def opencl_source(self) -> str:
        """The generated OpenCL C program (an "opencl" device)."""
        src = getattr(self._compiled.executable, "opencl_source", None)
        if src is None:
            raise AttributeError(
                f"no OpenCL source: compiled for device '{self.device}'; see .llvm_ir")
        return src

    @property
    def memory(self) -> MemoryReport:
        """The bytes one call uses, from the static memory plan (a `MemoryReport`;
        printed, a table): `peak_bytes` = `inputs` + `outputs` + `gradients` +
        `residuals` + `scratch`. `gradients` are the returned derivatives, `outputs`
        the other results; `residuals` (saved activations) and `scratch` share one
        arena of `temporaries` bytes; `unplanned_bytes` is what the temporaries
        would take without sharing."""
        built = self._compiled
        exe = built.executable
        derivatives = exe.output_types[built.num_results:]
        return exe.memory.with_gradients(sum(_tensor_bytes(t) for t in derivatives))

    def ir(self, stage: str | None = None, *, locations: bool = False) -> str:
        """MLIR text after `stage` (one of `stages`); by default the array-level module
        the lowering starts from (the stage before `inline-checkpoints`). With
        `locations`, each op ends with its source location, `loc("model.py":12:9)`
        (the user's line that traced it; made when first asked for, by replaying
        `pipeline` on the traced module)."""
        stages = self._compiled.stages
        if stage is None:
            keys = list(stages)
            stage = keys[keys.index("inline-checkpoints") - 1]
        if stage not in stages:
            raise KeyError(f"no stage '{stage}'; stages: {', '.join(stages)}")
        if not locations:
            return stages[stage]
        if self._located is None:
            self._located = located_stages(self.program.module, self.pipeline)
        return self._located[stage]

    def _inputs(self, args: tuple[Any, ...]) -> tuple[list[Any], list[np.ndarray]]:
        leaves, tree = flatten(tuple(args))
        signatures.check(self._expected, args, leaves, tree)
        return leaves, self.program.arguments(leaves)

    def __call__(self, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._call(args)
        finally:
            self.timings["run"] = time.perf_counter() - start

    def _call(self, args: tuple[Any, ...]) -> Any:
        if self._plan is not None:
            return self._call_batched(args)
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

    def _call_batched(self, args: tuple[Any, ...]) -> Any:
        free = self._free_args(args)
        leaves, tree = flatten(free)
        signatures.check(self._expected, free, leaves, tree)
        if self.mode == "jacobian":
            return self._plan(args).grad
        if self.mode == "withjacobian":
            return self._plan(args)
        if self.mode == "diaghessian":
            return jacobians.diagonal_of_rows(args, self._plan(args), self._plan.offsets)
        return jacobians.hessian_of_rows(args[0], self._plan(args))


def _has_integer_arrays(args: tuple[Any, ...]) -> bool:
    return any(isinstance(leaf, np.ndarray) and leaf.dtype.kind in "iu"
               for leaf in flatten(tuple(args))[0])


def _tensor_bytes(t: TensorType) -> int:
    return int(np.prod(t.get_shape(), dtype=np.int64)) * numpy_dtype(t.element_type).itemsize


def compile(f: Callable[..., Any], *example_args: Any, mode: str | None = None,  # noqa: A001
            device: str | None = None,
            passes: mode_pipeline.PassInsertions | None = None) -> Compiled:
    """Trace and compile `f` for arguments like `example_args`.

    Args:
      f: the function.
      *example_args: arguments fixing shapes, dtypes and structure.
      mode: "value" (f itself), "gradient", "withgradient", "pullback", "jacobian",
        "withjacobian", "hessian", "hessian_reverse" or "diaghessian": calls return what
        the function of that name (`pb.gradient`, `pb.jacobian`, ...) would. By
        default "gradient", or "value" for a function that writes its arguments in
        place (a training step: `x -= ...`, `x[...] = ...`, `pb.optimisers.update`).
      device: "cpu" by default.
      passes: registered passes to insert into the mode's pipeline, next to every run of
        an anchor pass: `{"after": {"simplify": ["my-pass"]}, "before": {"dce": [...]}}`
        (pass texts, options allowed: `"my-pass{factor=2}"`; see `.pipeline`).

    Returns:
      A `Compiled` object; call it with new arguments of the same signature.
    """
    return Compiled(f, example_args, mode, devices.resolve(device), passes)
