"""From a traced program to native code: the mode's pass pipeline, JIT; and the cache.

Each mode is one pipeline text (`pullback.mode_pipeline.pipeline_for`), run pass by
pass (`pullback.compiler.pass_runner`): the array-level passes here, the lowering
passes in the backend, which then translates what the last pass made (not a pass).

The compile cache is keyed by the program's structural key (the traced IR's shape,
not its Python identity) plus mode, options, inserted passes and device, so
re-tracing the same code through a new lambda finds the compiled code, while
closed-over arrays stay inputs. It is bounded and thread-safe
(`pullback.compile_cache`). CPU programs are also kept on disk across processes
(`pullback.disk_compile_cache`): a program found there is loaded instead of compiled,
and its stage texts are made only if someone reads them. A program with passes
inserted from outside pullback, or holding an op registered from outside it
(`register_op`), is not kept on disk (their code is not part of the disk key).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from typing import Any

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from pullback import disk_compile_cache
from pullback.compile_cache import CacheStats, CompileCache, limit_from_environment
from pullback.compiler import undo
from pullback.compiler.dialects.ad import (
    FORWARDDIFF_MARK,
    CallbackOp,
    EagerUpdateOp,
    ForwardOp,
)
from pullback.compiler.dialects.extension_ops import holds_extension_op
from pullback.compiler.ir_dump import dump_header
from pullback.compiler.pass_runner import PassHooks, run_pipeline
from pullback.devices import backend_of
from pullback.lazy_ir import LazyStages, RebuiltIR
from pullback.mode_pipeline import (
    Insertions,
    ModePipeline,
    int_array_attr,
    only_builtin,
    pipeline_for,
)
from pullback.print_ir import PrintIR, print_ir_request
from pullback.program import Program
from pullback.traced_gradient import check_not_differentiated

MODES = ("value", "gradient", "pullback", "jacobian", "hessian", "hessian_reverse")
BATCHED_MODES = MODES[3:]


@dataclasses.dataclass
class Built:
    """A compiled program and what its native entry point returns."""

    executable: Any
    entry: str
    grad_args: tuple[int, ...]   # argument indices whose gradients follow the results
    num_results: int
    stages: Mapping[str, str]    # lazy (`LazyStages`) when loaded from the disk cache
    timings: dict[str, float]
    batched_args: tuple[int, ...] = ()  # Hessian modes: arguments fed an identity block
    pipeline_text: str | Callable[[], str] = ""
    """The pipeline run (made when first read for a program loaded from disk)."""

    @property
    def pipeline(self) -> str:
        """The pass pipeline text from the traced module to the last pass."""
        if callable(self.pipeline_text):
            self.pipeline_text = self.pipeline_text()
        return self.pipeline_text

    def run(self, inputs: list[Any]) -> list[Any]:
        """The outputs for `inputs`; all or nothing: if the call raises, every written
        input and every array a Python function changed from a host call (`eager_update`)
        is as before the call (`pullback.compiler.undo`)."""
        ex = self.executable
        if not (ex.host_calls or ex.undo_inputs):
            return ex.run(inputs)  # nothing can be left half written
        with undo.all_or_nothing(inputs[i] for i in ex.undo_inputs):
            return ex.run(inputs)


_CACHE: CompileCache[Built] = CompileCache(limit_from_environment())


def clear_caches() -> None:
    """Forget every compiled program held in memory (its native code is freed once no
    `pb.compile` object holds it)."""
    _CACHE.clear()


def cache_info() -> CacheStats:
    """How often the compile cache answered, compiled and evicted; its size and limit;
    and how often the disk cache was hit, missed, written and found damaged."""
    return dataclasses.replace(_CACHE.info(), **disk_compile_cache.counts())


def set_cache_limit(entries: int) -> int:
    """Keep at most `entries` compiled programs in memory (least recently used are
    dropped first; 0 keeps none); returns the previous limit. The default is
    `PULLBACK_CACHE_ENTRIES` or 64."""
    return _CACHE.set_limit(entries)


def compiled(program: Program, mode: str, device: str, *, keep_ir: bool = False,
             cotangents: tuple[int, ...] = (), wrt: tuple[int, ...] = (),
             insertions: Insertions = ()) -> Built:
    """The compiled form of `program` in `mode`, from the cache when possible.

    `wrt` picks the differentiated arguments (default: every differentiable one);
    `insertions` are passes inserted into the mode's pipeline (`insertions_of`)."""
    key = (program.key, mode, cotangents, wrt, device, insertions)
    return _CACHE.get(
        key, lambda: _load_or_build(program, mode, device, keep_ir, cotangents, wrt,
                                    insertions),
        usable=lambda built: bool(built.stages) or not keep_ir)


def _load_or_build(program: Program, mode: str, device: str, keep_ir: bool,
                   cotangents: tuple[int, ...], wrt: tuple[int, ...],
                   insertions: Insertions) -> Built:
    """`build`, or the program loaded from the disk cache (CPU), which keeps what it builds."""
    if (print_ir_request() is not None or not disk_compile_cache.applies(device)
            or not only_builtin(insertions) or holds_extension_op(program.module)):
        built = build(program, mode, device, keep_ir=keep_ir, cotangents=cotangents, wrt=wrt,
                      insertions=insertions)
        getattr(built.executable, "take_object", lambda: None)()  # not kept: free it
        return built
    request = (program.key, mode, cotangents, wrt, device, insertions)
    ir = _rebuilt_ir(program, mode, device, cotangents, wrt, insertions) if keep_ir else None
    loaded = disk_compile_cache.load(request, ir.llvm_ir if ir else _no_ir)
    if loaded is not None:
        wrt = wrt or tuple(program.diff_args())  # parameters' arguments: before `_bare`
        bare = _bare(program)

        def text() -> str:
            return pipeline_for(bare, mode, device, cotangents=cotangents, wrt=wrt,
                                insertions=insertions).text

        return Built(loaded.executable, loaded.entry, loaded.grad_args, loaded.num_results,
                     LazyStages(ir) if ir else {}, {"load": loaded.seconds},
                     loaded.batched_args, text)
    built = build(program, mode, device, keep_ir=keep_ir, cotangents=cotangents, wrt=wrt,
                  insertions=insertions)
    disk_compile_cache.store(request, built.executable, built.entry, built.grad_args,
                             built.num_results, built.batched_args)
    return built


def _bare(program: Program) -> Program:
    """`program` without the arrays its function closes over (its traced module only)."""
    return dataclasses.replace(program, hidden=[], eager=None)


def _no_ir() -> str:
    raise AttributeError("no LLVM IR: the program was loaded from the disk cache without "
                         "its IR (pb.compile objects make it when asked)")


def _rebuilt_ir(program: Program, mode: str, device: str, cotangents: tuple[int, ...],
                wrt: tuple[int, ...], insertions: Insertions) -> RebuiltIR:
    """The IR texts of a program loaded from disk, made by compiling it again; holds
    the traced module only (not the arrays the function closes over)."""
    wrt = wrt or tuple(program.diff_args())  # parameters' arguments: before `_bare`
    bare = _bare(program)

    def llvm_ir() -> str:
        built = build(bare, mode, device, cotangents=cotangents, wrt=wrt,
                      insertions=insertions)
        built.executable.take_object()
        return built.executable.llvm_ir

    return _pass_texts(bare, mode, device, cotangents, wrt, insertions, llvm_ir)


class _Recorder:
    """Stage texts (kept with `keep_ir` or when printing) and seconds per pass."""

    def __init__(self, keep_ir: bool, may_print: bool = True):
        self.printing: PrintIR | None = print_ir_request() if may_print else None
        self.keep = keep_ir or self.printing is not None
        self.stages: dict[str, str] = {}
        self.hooks = PassHooks(self._before, self._after)

    @property
    def timings(self) -> dict[str, float]:
        return self.hooks.timings

    def stage(self, key: str, module: ModuleOp) -> None:
        """Record `module`'s text as stage `key` (and print it if asked)."""
        if not self.keep:
            return
        text = str(module)
        self.stages[key] = text
        if self.printing is not None and self.printing.after(key):
            print(f"{dump_header('After', key)}\n{text}\n", file=sys.stderr)

    def _before(self, key: str, p: ModulePass, module: ModuleOp) -> None:
        if self.printing is not None and self.printing.before(key):
            print(f"{dump_header('Before', key)}\n{str(module)}\n", file=sys.stderr)

    def _after(self, key: str, p: ModulePass, module: ModuleOp) -> None:
        self.stage(key, module)


@dataclasses.dataclass
class Prepared:
    """A program differentiated and cleaned up for one mode, ready for a backend."""

    module: ModuleOp
    entry: str
    grad_args: tuple[int, ...]
    num_results: int
    batched_args: tuple[int, ...]
    pipeline: ModePipeline
    stage_keys: tuple[str, ...]
    """The stage keys of the passes run so far (`trace` first)."""


def prepare(program: Program, mode: str, *, cotangents: tuple[int, ...] = (),
            wrt: tuple[int, ...] = (), recorder: _Recorder | None = None,
            device: str = "cpu", insertions: Insertions = ()) -> Prepared:
    """The array-level module of `program` in `mode`: the array-level passes of its
    pipeline (`pipeline_for`) run on a copy of the traced module."""
    if mode not in MODES:
        raise ValueError(f"unknown mode '{mode}'; accepted modes: {', '.join(MODES)}")
    module = program.module
    if mode in ("hessian", "hessian_reverse"):
        _check_first_order_only(module)
    if mode != "value":
        check_not_differentiated(module)
    if mode in BATCHED_MODES:
        _check_no_eager_update(module, mode)
    plan = pipeline_for(program, mode, device, cotangents=cotangents, wrt=wrt,
                        insertions=insertions)
    module = module.clone()
    rec = recorder or _Recorder(False)
    rec.stage("trace", module)
    keys = run_pipeline(plan.array_text, module, rec.hooks, taken=("trace",))
    fn = _function(module, plan.entry)
    grad_args = plan.array.grad_args
    if grad_args is None:
        grad_args = int_array_attr(fn, "pullback.wrt")
    num_results = len(fn.function_type.outputs.data) - len(grad_args)
    return Prepared(module, plan.entry, grad_args, num_results, plan.array.batched_args, plan,
                    ("trace", *keys))


def build(program: Program, mode: str, device: str, *, keep_ir: bool = False,
          cotangents: tuple[int, ...] = (), wrt: tuple[int, ...] = (),
          insertions: Insertions = ()) -> Built:
    """Run the pass pipeline for `mode` and compile the entry function for `device`.

    With `keep_ir`, the stage texts are made when first read, by running the passes
    again on the traced module (printing them all would take longer than most passes);
    printing (`PULLBACK_PRINT_IR`) keeps them as the compile goes."""
    rec = _Recorder(False)
    prep = prepare(program, mode, cotangents=cotangents, wrt=wrt, recorder=rec, device=device,
                   insertions=insertions)
    executable = _compile_for(device, prep, rec)
    rec.stages.update(getattr(executable, "stages", {}))
    rec.timings.update(getattr(executable, "timings", {}))
    if rec.printing is not None and rec.printing.after_all:
        print(f"// -----// {target_code_name(device)} //----- //\n"
              f"{target_code(executable)}\n", file=sys.stderr)
    stages: Mapping[str, str] = rec.stages
    if keep_ir and not rec.keep:
        code = getattr(executable, "llvm_ir", "")
        stages = LazyStages(_pass_texts(program, mode, device, cotangents, wrt, insertions,
                                        lambda: code))
    return Built(executable, prep.entry, prep.grad_args, prep.num_results, stages,
                 rec.timings, prep.batched_args, prep.pipeline.text)


def _pass_texts(program: Program, mode: str, device: str, cotangents: tuple[int, ...],
                wrt: tuple[int, ...], insertions: Insertions,
                llvm_ir: Callable[[], str]) -> RebuiltIR:
    """The stage texts of a compiled program, made when first read by running its
    pipeline's passes again (no LLVM), and its LLVM IR from `llvm_ir`; holds the traced
    module only."""
    wrt = wrt or tuple(program.diff_args())  # parameters' arguments: before `_bare`
    bare = _bare(program)

    def rebuild() -> tuple[dict[str, str], str]:
        from pullback.compiler.backends.kernel_level import lower_to_kernels

        rec = _Recorder(True, may_print=False)
        prep = prepare(bare, mode, cotangents=cotangents, wrt=wrt, recorder=rec,
                       device=device, insertions=insertions)
        lowered = lower_to_kernels(prep.module, prep.entry, True,
                                   passes=prep.pipeline.lowering_text, taken=prep.stage_keys)
        return {**rec.stages, **lowered.stages}, llvm_ir()

    return RebuiltIR(rebuild)


def _check_first_order_only(module: ModuleOp) -> None:
    """Second derivatives cannot pass a forwarddiff region (its Jacobian is constant)."""
    for op in module.walk():
        if isinstance(op, ForwardOp) or FORWARDDIFF_MARK in op.attributes:
            raise NotImplementedError(
                "second derivatives through pb.forwarddiff are not supported: the region's "
                "Jacobian is a constant to further differentiation; compute the Hessian "
                "without pb.forwarddiff")


def _check_no_eager_update(module: ModuleOp, mode: str) -> None:
    """Jacobians and Hessians have no single backward pass to run an update in."""
    for op in module.walk():
        if (isinstance(op, CallbackOp) and op.kind.data == "eager_update"
                or isinstance(op, EagerUpdateOp)):
            raise NotImplementedError(
                f"pb.eager_update ('{op.label.data}') updates parameters in one backward "
                f"pass; {mode} has none (it differentiates row by row or twice): use "
                "pb.gradient, pb.withgradient or pb.pullback")


def _compile_for(device: str, prep: Prepared, rec: _Recorder) -> Any:
    """The backend's executable: it runs the lowering passes of the pipeline."""
    kind, spec = backend_of(device)
    options = {"keep_ir": rec.keep, "passes": prep.pipeline.lowering_text,
               "hooks": PassHooks(rec.hooks.before, _printer(rec), rec.timings),
               "taken": prep.stage_keys}
    if kind == "opencl":
        from pullback.compiler.backends import opencl

        return opencl.compile_function(prep.module, prep.entry, device=spec, **options)
    from pullback.compiler.backends import llvm

    return llvm.compile_function(prep.module, prep.entry, **options)


def _printer(rec: _Recorder) -> Callable[[str, ModulePass, ModuleOp], None] | None:
    """Print a lowering stage when asked (the backend records the texts itself)."""
    printing = rec.printing
    if printing is None:
        return None

    def after(key: str, p: ModulePass, module: ModuleOp) -> None:
        if printing.after(key):
            print(f"{dump_header('After', key)}\n{str(module)}\n", file=sys.stderr)

    return after


def target_code_name(device: str) -> str:
    return "OpenCL C" if backend_of(device)[0] == "opencl" else "LLVM IR"


def target_code(executable: Any) -> str:
    """The generated code of an executable: OpenCL C source or optimised LLVM IR."""
    return getattr(executable, "opencl_source", None) or executable.llvm_ir


def _function(module: ModuleOp, name: str) -> func.FuncOp:
    for op in module.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == name:
            return op
    raise KeyError(f"no function @{name} in the module")
