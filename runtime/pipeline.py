"""From a traced program to native code: AD passes, cleanup, lowering, JIT; and the cache.

The compile cache is keyed by the program's structural key (the traced IR's shape,
not its Python identity) plus mode, options and device, so re-tracing the same code
through a new lambda finds the compiled code, while closed-over arrays stay inputs.
It is bounded and thread-safe (`pullback.compile_cache`). CPU programs are also kept
on disk across processes (`pullback.disk_compile_cache`): a program found there is
loaded instead of compiled, and its stage texts are made only if someone reads them.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, FunctionType, ModuleOp

from pullback import disk_compile_cache
from pullback.compile_cache import CacheStats, CompileCache, limit_from_environment
from pullback.compiler import undo
from pullback.compiler.autodiff.functions import bind_zeros, is_float
from pullback.compiler.context import make_context
from pullback.compiler.dialects.ad import CallbackOp, EagerUpdateOp
from pullback.compiler.dialects.array import shape_of
from pullback.compiler.passes import get_pass
from pullback.devices import backend_of
from pullback.dsl.forwarddiff import FORWARDDIFF_MARK, drop_derivative_terms
from pullback.lazy_ir import LazyStages, RebuiltIR
from pullback.program import Program
from pullback.traced_gradient import check_not_differentiated

MODES = ("value", "gradient", "pullback", "jacobian", "hessian", "hessian_reverse")
BATCHED_MODES = MODES[3:]
CLEANUP = ("simplify", "cse", "dce")


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
             cotangents: tuple[int, ...] = (), wrt: tuple[int, ...] = ()) -> Built:
    """The compiled form of `program` in `mode`, from the cache when possible.

    `wrt` picks the differentiated arguments (default: every differentiable one)."""
    key = (program.key, mode, cotangents, wrt, device)
    return _CACHE.get(
        key, lambda: _load_or_build(program, mode, device, keep_ir, cotangents, wrt),
        usable=lambda built: bool(built.stages) or not keep_ir)


def _load_or_build(program: Program, mode: str, device: str, keep_ir: bool,
                   cotangents: tuple[int, ...], wrt: tuple[int, ...]) -> Built:
    """`build`, or the program loaded from the disk cache (CPU), which keeps what it builds."""
    if _printing() or not disk_compile_cache.applies(device):
        built = build(program, mode, device, keep_ir=keep_ir, cotangents=cotangents, wrt=wrt)
        getattr(built.executable, "take_object", lambda: None)()  # not kept: free it
        return built
    request = (program.key, mode, cotangents, wrt, device)
    ir = _rebuilt_ir(program, mode, device, cotangents, wrt) if keep_ir else None
    loaded = disk_compile_cache.load(request, ir.llvm_ir if ir else _no_ir)
    if loaded is not None:
        return Built(loaded.executable, loaded.entry, loaded.grad_args, loaded.num_results,
                     LazyStages(ir) if ir else {}, {"load": loaded.seconds},
                     loaded.batched_args)
    built = build(program, mode, device, keep_ir=keep_ir, cotangents=cotangents, wrt=wrt)
    disk_compile_cache.store(request, built.executable, built.entry, built.grad_args,
                             built.num_results, built.batched_args)
    return built


def _no_ir() -> str:
    raise AttributeError("no LLVM IR: the program was loaded from the disk cache without "
                         "its IR (pb.compile objects make it when asked)")


def _rebuilt_ir(program: Program, mode: str, device: str, cotangents: tuple[int, ...],
                wrt: tuple[int, ...]) -> RebuiltIR:
    """The IR texts of a program loaded from disk, made by building it again with them
    kept; holds the traced module only (not the arrays the function closes over)."""
    wrt = wrt or tuple(program.diff_args())
    bare = dataclasses.replace(program, hidden=[], eager=None)

    def rebuild() -> tuple[dict[str, str], str]:
        built = build(bare, mode, device, keep_ir=True, cotangents=cotangents, wrt=wrt)
        built.executable.take_object()
        return dict(built.stages), built.executable.llvm_ir

    return RebuiltIR(rebuild)


def _printing() -> bool:
    return os.environ.get("PULLBACK_PRINT_IR", "") == "after-all"


class _Recorder:
    def __init__(self, keep_ir: bool):
        self.keep = keep_ir or _printing()
        self.stages: dict[str, str] = {}
        self.timings: dict[str, float] = {}

    def stage(self, name: str, module: ModuleOp) -> None:
        if not self.keep:
            return
        text = str(module)
        self.stages[name] = text
        if _printing():
            print(f"// -----// IR after {name} //----- //\n{text}\n", file=sys.stderr)

    def timed(self, name: str, start: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


@dataclasses.dataclass
class Prepared:
    """A program differentiated and cleaned up for one mode, ready for a backend."""

    module: ModuleOp
    entry: str
    grad_args: tuple[int, ...]
    num_results: int
    batched_args: tuple[int, ...]


def prepare(program: Program, mode: str, *, cotangents: tuple[int, ...] = (),
            wrt: tuple[int, ...] = (), recorder: _Recorder | None = None) -> Prepared:
    """The array-level module of `program` in `mode`: the AD passes, then cleanup."""
    if mode not in MODES:
        raise ValueError(f"unknown mode '{mode}'; accepted modes: {', '.join(MODES)}")
    ctx = make_context()
    module = program.module.clone()
    rec = recorder or _Recorder(False)
    rec.stage("trace", module)
    entry, grad_args, batched = program.name, (), ()
    wrt = wrt or tuple(program.diff_args())
    if mode in ("hessian", "hessian_reverse"):
        _check_first_order_only(module)
    if mode != "value":
        check_not_differentiated(module)
    if mode in BATCHED_MODES:
        _check_no_eager_update(module, mode)
    if mode in BATCHED_MODES:
        t0 = time.perf_counter()
        entry, grad_args, batched = _batched_derivative(ctx, module, program.name, mode,
                                                        cotangents, wrt)
        _keep_only(module, entry)
        rec.timed("autodiff", t0)
        rec.stage("autodiff", module)
    elif mode != "value":
        t0 = time.perf_counter()
        pass_cls = get_pass("autodiff")
        pass_cls(func=program.name, wrt=wrt, cotangents=cotangents,
                 seed=(mode == "gradient")).apply(ctx, module)
        entry = program.name + "_vjp"
        _keep_only(module, entry)
        grad_args = _int_array_attr(_function(module, entry), "pullback.wrt")
        rec.timed("autodiff", t0)
        rec.stage("autodiff", module)
    drop_derivative_terms(module)
    t0 = time.perf_counter()
    for name in CLEANUP:
        get_pass(name)().apply(ctx, module)
    rec.timed("simplify", t0)
    rec.stage("simplify", module)
    fn = _function(module, entry)
    num_results = len(fn.function_type.outputs.data) - len(grad_args)
    return Prepared(module, entry, grad_args, num_results, batched)


def build(program: Program, mode: str, device: str, *, keep_ir: bool = False,
          cotangents: tuple[int, ...] = (), wrt: tuple[int, ...] = ()) -> Built:
    """Run the pass pipeline for `mode` and compile the entry function for `device`."""
    rec = _Recorder(keep_ir)
    prep = prepare(program, mode, cotangents=cotangents, wrt=wrt, recorder=rec)
    executable = _compile_for(device, prep.module, prep.entry, rec.keep)
    for stage, text in getattr(executable, "stages", {}).items():
        rec.stages[stage] = text
        if _printing():
            print(f"// -----// IR after {stage} //----- //\n{text}\n", file=sys.stderr)
    rec.timings.update(getattr(executable, "timings", {}))
    if _printing():
        print(f"// -----// {target_code_name(device)} //----- //\n"
              f"{target_code(executable)}\n", file=sys.stderr)
    return Built(executable, prep.entry, prep.grad_args, prep.num_results, rec.stages,
                 rec.timings, prep.batched_args)


def _check_first_order_only(module: ModuleOp) -> None:
    """Second derivatives cannot pass a forwarddiff region (its Jacobian is constant)."""
    for op in module.walk():
        if FORWARDDIFF_MARK in op.attributes:
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


def _compile_for(device: str, module: ModuleOp, entry: str, keep_ir: bool) -> Any:
    kind, spec = backend_of(device)
    if kind == "opencl":
        from pullback.compiler.backends import opencl

        return opencl.compile_function(module, entry, keep_ir=keep_ir, device=spec)
    from pullback.compiler.backends import llvm

    return llvm.compile_function(module, entry, keep_ir=keep_ir)


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


def _keep_only(module: ModuleOp, name: str) -> None:
    for op in list(module.ops):
        if isinstance(op, func.FuncOp) and op.sym_name.data != name:
            op.detach()
            op.erase()


def _int_array_attr(fn: func.FuncOp, name: str) -> tuple[int, ...]:
    attr = fn.attributes.get(name)
    if attr is None:
        return ()
    assert isinstance(attr, DenseArrayBase)
    return tuple(int(v) for v in attr.get_values())


# ----------------------------------------------------------------------------
# Batched derivatives: Jacobians and Hessians as one native call
# ----------------------------------------------------------------------------


def _batched_derivative(ctx: Context, module: ModuleOp, name: str, mode: str,
                        cotangents: tuple[int, ...],
                        wrt: tuple[int, ...]) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """Build the entry function of a batched mode: (its name, the arguments whose
    derivative blocks it returns, the arguments whose identity block it takes).

    jacobian: `autodiff` with a cotangent, then `vmap` over the cotangent; the entry
    returns the results (unbatched) and one stacked gradient per argument.
    hessian: `autodiff{seed}`, `jvp` over it (tangents of other arguments bound to
    zero), `vmap` over the tangents. hessian_reverse: `autodiff{seed}`, `autodiff`
    over it with the gradients' cotangents, `vmap` over those. Both return only the
    stacked second derivatives; the batch size is the total size of `wrt`.
    """
    n = len(_function(module, name).body.block.args)
    if mode == "jacobian":
        get_pass("autodiff")(func=name, wrt=wrt, cotangents=cotangents).apply(ctx, module)
        vjp = _function(module, name + "_vjp")
        size = _size(shape_of(vjp.body.block.args[n]))
        get_pass("vmap")(func=name + "_vjp", args=(n,), size=size,
                         broadcast=False).apply(ctx, module)
        entry = name + "_vjp_vmap"
        return entry, _int_array_attr(_function(module, entry), "pullback.wrt"), ()
    get_pass("autodiff")(func=name, wrt=wrt, seed=True).apply(ctx, module)
    vjp = _function(module, name + "_vjp")
    grads = _int_array_attr(vjp, "pullback.wrt")
    if not grads:
        return name, (), ()
    block = vjp.body.block
    size = sum(_size(shape_of(block.args[i])) for i in wrt)
    num_out = len(vjp.function_type.outputs.data)
    if mode == "hessian":
        get_pass("jvp")(func=name + "_vjp").apply(ctx, module)
        fn = _function(module, name + "_vjp_jvp")
        tangents = _int_array_attr(fn, "pullback.tangents")
        bind_zeros(fn, [n + k for k, i in enumerate(tangents) if i not in wrt])
        batch_args, seconds = wrt, grads
        outputs = vjp.function_type.outputs.data
        float_out = [k for k, t in enumerate(outputs) if is_float(t)]
        keep = [num_out + float_out.index(k) for k in range(num_out - len(grads), num_out)]
    else:
        gradient_results = tuple(range(num_out - len(grads), num_out))
        get_pass("autodiff")(func=name + "_vjp", wrt=grads,
                             cotangents=gradient_results).apply(ctx, module)
        fn = _function(module, name + "_vjp_vjp")
        batch_args, seconds = grads, _int_array_attr(fn, "pullback.wrt")
        total = len(fn.function_type.outputs.data)
        keep = list(range(total - len(seconds), total))
    fn_name = fn.sym_name.data
    get_pass("vmap")(func=fn_name, args=tuple(range(n, n + len(batch_args))),
                     size=size).apply(ctx, module)
    entry = _function(module, fn_name + "_vmap")
    _keep_results(entry, keep)
    return entry.sym_name.data, seconds, batch_args


def _size(shape: tuple[int, ...]) -> int:
    total = 1
    for d in shape:
        total *= d
    return total


def _keep_results(fn: func.FuncOp, keep: list[int]) -> None:
    """Make `fn` return only its results at `keep`."""
    ret = fn.body.block.last_op
    assert isinstance(ret, func.ReturnOp)
    values = [ret.arguments[k] for k in keep]
    fn.body.block.insert_op_before(func.ReturnOp(*values), ret)
    ret.detach()
    ret.erase()
    fn.function_type = FunctionType.from_lists(
        list(fn.function_type.inputs.data), [v.type for v in values])
