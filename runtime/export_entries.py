"""From `pb.compile` objects to exported entries: names, arrays, native mappings.

An entry's C function takes the compiled function's array leaves in argument order
(named by their Python paths: `params['w']` becomes `params_w`), then the arrays the
function closes over (named by the variable that holds them where it can be found,
else `captured_<k>`), then, for `mode="pullback"`, one cotangent per real result. It
returns the values, derivatives, Jacobians or Hessians that `pb.compile` would return,
flattened in the same order.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from pullback import pipeline
from pullback.compiled import Compiled
from pullback.compiler.dialects.ad import CallbackOp
from pullback.compiler.export.entry import (
    Array,
    Constant,
    ExportEntry,
    FromNative,
    Seed,
    Zeros,
    c_identifier,
)
from pullback.dsl.pytree import flatten, leaf_paths
from pullback.jacobians import JacobianCall, SecondDerivativeCall
from pullback.program import Program, ResultIndex

_WHAT_CALLS_PYTHON = {"showgrad": "pb.showgrad", "hook": "pb.hook",
                      "eager_update": "a Python pb.eager_update function"}


class NotExportable(ValueError):
    """An entry that cannot run without Python (or was compiled for nothing)."""


def export_entry(name: str, compiled: Compiled) -> ExportEntry:
    """The exported form of entry `name`, compiled as `compiled`."""
    if not isinstance(compiled, Compiled):
        raise TypeError(f"entry '{name}' must be a pb.compile(...) object, got "
                        f"{type(compiled).__name__}")
    if compiled.mode in ("jacobian", "withjacobian"):
        entry = _jacobian_entry(name, compiled)
    elif compiled.mode in ("hessian", "hessian_reverse", "diaghessian"):
        entry = _second_derivative_entry(name, compiled)
    else:
        entry = _plain_entry(name, compiled)
    return _captured_last(entry)


def _captured_last(entry: ExportEntry) -> ExportEntry:
    """`entry` with its captured inputs after the others (the loader may omit them)."""
    order = sorted(range(len(entry.inputs)), key=lambda i: entry.inputs[i].role == "captured")
    where = {old: new for new, old in enumerate(order)}
    entry.inputs = [entry.inputs[i] for i in order]
    entry.native_inputs = [where[s] if isinstance(s, int) else s for s in entry.native_inputs]
    return entry


# -- inputs -------------------------------------------------------------------------------


@dataclasses.dataclass
class _Inputs:
    arrays: list[Array]
    """The entry's inputs (C arguments)."""
    native: list[int | Constant]
    """Per native input: its index among `arrays`, or the constant it is."""
    captured: list[np.ndarray]
    """The values of the captured inputs now, in order."""

    def user(self, arg: int) -> int:
        """The input index of native input `arg`."""
        index = self.native[arg]
        assert isinstance(index, int), "a derivative with respect to a constant"
        return index


def _inputs(compiled: Compiled, program: Program, leaf_names: list[str],
            written: tuple[int, ...] = ()) -> _Inputs:
    """The native inputs of `program`: its traced leaves, then its hidden arrays.

    A hidden array held by a variable of the function (closure or global: data,
    optimiser state) is an input named after that variable, whose value now is kept
    for the loader; one the function made while it was traced (a mask, an index
    table) is a constant of the library, unless it is written or differentiated."""
    dtypes = program.input_dtypes
    fn_types = program.module.ops.first.function_type.inputs.data
    taken: set[str] = set()
    arrays: list[Array] = []
    native: list[int | Constant] = []
    traced = program.traced_leaves
    for k, leaf in enumerate(traced):
        path = leaf_names[leaf] if leaf < len(leaf_names) else f"arg{k}"
        name = c_identifier(path, taken)
        taken.add(name)
        native.append(len(arrays))
        sig = compiled._expected.signatures
        carried = (leaf < len(sig) and len(sig[leaf]) == 3 and sig[leaf][2].startswith("int")
                   and dtypes[k].kind == "f")
        arrays.append(Array(name, dtypes[k], tuple(fn_types[k].get_shape()), "argument",
                            written=k in written, integers=carried,
                            description=f"argument {path}" + (
                                f" (integers, passed as {dtypes[k]})" if carried else "")))
    names = _captured_names(compiled.function, program.hidden)
    seen: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    captured = []
    for h, arr in enumerate(program.hidden):
        k = len(traced) + h
        shape = tuple(fn_types[k].get_shape())
        value = np.ascontiguousarray(arr, dtype=dtypes[k]).reshape(shape).copy()
        param = h < len(program.hidden_diff) and program.hidden_diff[h]
        if h not in names and not param and k not in written:
            native.append(Constant(value))
            continue
        what = names.get(h, f"captured_{h}")
        same = _same_bytes(arr, value, seen.get(what))
        if same is not None and k not in written:
            native.append(same)  # a reshape of an input already passed: the same bytes
            continue
        name = c_identifier(what, taken)
        taken.add(name)
        seen.setdefault(what, (arr, value, len(arrays)))
        native.append(len(arrays))
        arrays.append(Array(name, dtypes[k], tuple(fn_types[k].get_shape()), "captured",
                            written=k in written,
                            description=("parameter " if param else "captured array ")
                            + what))
        captured.append(value)
    return _Inputs(arrays, native, captured)


def _same_bytes(arr: np.ndarray, value: np.ndarray,
                first: tuple[np.ndarray, np.ndarray, int] | None) -> int | None:
    """The input index of `first` when `arr` is a reshape of it (the same bytes in the
    same order), else None."""
    if first is None:
        return None
    other, other_value, index = first
    if (arr.dtype == other.dtype and value.dtype == other_value.dtype
            and arr.nbytes == other.nbytes and arr.flags.c_contiguous
            and other.flags.c_contiguous
            and arr.__array_interface__["data"][0] == other.__array_interface__["data"][0]):
        return index
    return None


def _captured_names(f: Callable[..., Any], hidden: list[np.ndarray]) -> dict[int, str]:
    """Names for hidden arrays found in `f`'s closure or globals (by identity)."""
    try:
        spaces = inspect.getclosurevars(f)
    except (TypeError, ValueError):
        return {}
    where: dict[int, str] = {}
    for space in (spaces.nonlocals, spaces.globals):
        for var, value in space.items():
            if inspect.ismodule(value) or callable(value) and not isinstance(value, np.ndarray):
                continue
            leaves, tree = flatten(value)
            for leaf, path in zip(leaves, leaf_paths(tree, var)):
                if isinstance(leaf, np.ndarray):
                    where.setdefault(id(leaf), path)
            for leaf, path in _state_arrays(value, var):
                where.setdefault(id(leaf), path)
    names = {}
    for h, arr in enumerate(hidden):
        view = arr  # an array indexed or reshaped before use is a view of the named one
        while id(view) not in where and isinstance(view.base, np.ndarray):
            view = view.base
        if id(view) in where:
            names[h] = where[id(view)]
    return names


def _state_arrays(value: Any, var: str) -> list[tuple[np.ndarray, str]]:
    """Arrays inside optimiser-state leaves (`pb.optimisers.setup`), with their paths."""
    from pullback.optimisers import Leaf

    found = []
    leaves, tree = flatten(value)
    for leaf, path in zip(leaves, leaf_paths(tree, var)):
        if isinstance(leaf, Leaf):
            inner, inner_tree = flatten(leaf.state)
            for arr, sub in zip(inner, leaf_paths(inner_tree, path + ".state")):
                if isinstance(arr, np.ndarray):
                    found.append((arr, sub))
    return found


def _refuse_python(name: str, module: ModuleOp) -> None:
    for op in module.walk():
        if isinstance(op, CallbackOp):
            what = _WHAT_CALLS_PYTHON.get(op.kind.data, op.kind.data)
            raise NotExportable(
                f"entry '{name}' cannot be exported: it runs Python during the call "
                f"({what} '{op.label.data}'), and a kernel library runs without Python. "
                "Export a version without it (pb.showgrad and pb.hook are for "
                "inspection; an optimiser rule such as pb.optimisers.Adam instead of a "
                "Python function compiles natively)")


def _check_device(name: str, compiled: Compiled) -> None:
    if compiled.device.split(":")[0] not in ("cpu", "opencl"):
        raise NotExportable(f"entry '{name}' was compiled for device '{compiled.device}'; "
                            "exports take entries compiled for 'cpu' or 'opencl'")


def _module_for(name: str, compiled: Compiled, prepared: pipeline.Prepared,
                built: pipeline.Built) -> Any:
    """What the backend compiles: the array-level module (CPU) or the executable."""
    _refuse_python(name, prepared.module)
    if compiled.device.startswith("opencl"):
        return built.executable
    return prepared.module


def _memory(compiled: Compiled) -> dict[str, int]:
    return {k: int(v) for k, v in dataclasses.asdict(compiled.memory).items()}


# -- value, gradient, withgradient, pullback ---------------------------------------------


def _plain_entry(name: str, compiled: Compiled) -> ExportEntry:
    _check_device(name, compiled)
    program = compiled.program
    mode = compiled.mode
    core = {"value": "value", "pullback": "pullback"}.get(
        mode, "gradient" if compiled._cts else "value")
    prepared = pipeline.prepare(program, core, cotangents=compiled._cts,
                                insertions=compiled.insertions)
    module = _module_for(name, compiled, prepared, compiled._built)
    ins = _inputs(compiled, program, compiled._expected.paths(),
                  tuple(compiled._built.executable._spec.written))
    inputs = list(ins.arrays)
    native_inputs: list[int | Seed | Constant] = list(ins.native)
    result_types = program.result_types()
    taken = {a.name for a in inputs}
    if mode == "pullback":
        for r in compiled._cts:
            shape, dtype = result_types[r]
            cname = c_identifier(f"cotangent_{_result_name(program, r)}", taken)
            taken.add(cname)
            native_inputs.append(len(inputs))
            inputs.append(Array(cname, dtype, shape, "cotangent",
                                description=f"cotangent of result {_result_name(program, r)}"))
    native_outputs = [(dtype, shape) for shape, dtype in result_types]
    outputs: list[Array] = []
    sources: list[FromNative | Zeros] = []
    if mode != "gradient":
        for r, (shape, dtype) in enumerate(result_types):
            rname = c_identifier(_result_name(program, r), taken)
            taken.add(rname)
            outputs.append(Array(rname, dtype, shape, "value",
                                 description=_result_words(program, r)))
            sources.append(FromNative(r))
    n = len(result_types)
    for k, arg in enumerate(prepared.grad_args):
        of = inputs[ins.user(arg)]
        gname = c_identifier(f"grad_{of.name}", taken)
        taken.add(gname)
        dtype = np.dtype(np.float64) if of.dtype.kind != "f" else of.dtype
        native_outputs.append((dtype, of.shape))
        outputs.append(Array(gname, dtype, of.shape, "gradient", of=of.name,
                             description=f"gradient with respect to {of.name}"))
        sources.append(FromNative(n + k))
    return ExportEntry(name, mode, inputs, outputs, native_inputs, native_outputs, sources,
                       module, prepared.entry, compiled.device, _memory(compiled),
                       ins.captured, prepared.pipeline.lowering_text)


def _result_words(program: Program, r: int) -> str:
    """How the header describes result `r`: "the result", or "result <path>"."""
    path = _result_name(program, r)
    return "the result" if path == "result" else f"result {path}"


def _result_name(program: Program, r: int) -> str:
    """The Python path of result `r` in the function's output (`result` for a lone one)."""
    paths = leaf_paths(program.out_tree, "result")
    for leaf, path in zip(program.out_leaves, paths):
        if isinstance(leaf, ResultIndex) and int(leaf) == r:
            return path
    return f"result_{r}"


# -- jacobian, withjacobian ------------------------------------------------------------


def _free_leaf_names(compiled: Compiled) -> list[str]:
    return compiled._expected.paths()


def _jacobian_entry(name: str, compiled: Compiled) -> ExportEntry:
    _check_device(name, compiled)
    plan: JacobianCall = compiled._plan
    program = plan.traced.program
    if plan.built is None or not plan._seeds:
        raise NotExportable(f"entry '{name}': the Jacobian needs no native code (the output "
                            "is a constant or empty, or nothing is differentiated); there "
                            "is nothing to export")
    wrt = (tuple(p for p in plan.traced.position if p is not None) if plan.params is None
           else tuple(a for a, _ in program.param_args()))
    prepared = pipeline.prepare(program, "jacobian", cotangents=(plan.out,), wrt=wrt,
                                insertions=compiled.insertions)
    module = _module_for(name, compiled, prepared, plan.built)
    ins = _inputs(compiled, program, _free_leaf_names(compiled))
    inputs = ins.arrays
    shape, dtype = program.result_types()[plan.out]
    rows = int(np.prod(shape, dtype=np.int64))
    seed = Seed(dtype, tuple(shape), rows, 0)
    native_inputs: list[int | Seed | Constant] = [*ins.native, seed]
    result_types = program.result_types()
    native_outputs = [(dt, sh) for sh, dt in result_types]
    n = len(native_outputs)
    grad_at = {}
    for k, arg in enumerate(prepared.grad_args):
        grad_at[arg] = n + k
        of = inputs[ins.user(arg)]
        native_outputs.append((of.dtype if of.dtype.kind == "f" else np.dtype(np.float64),
                               (rows, *of.shape)))
    outputs: list[Array] = []
    sources: list[FromNative | Zeros] = []
    taken = {a.name for a in inputs}
    if compiled.mode == "withjacobian":
        vname = c_identifier(_result_name(program, plan.out), taken)
        taken.add(vname)
        outputs.append(Array(vname, dtype, tuple(shape), "value", description="the value"))
        sources.append(FromNative(int(plan.out)))
    if plan.params is not None:  # in the order of the Params, as the Grads returned
        order = {id(a): k for k, a in enumerate(plan.params)}
        args = [a for a, arr in sorted(program.param_args(),
                                       key=lambda pair: order.get(id(pair[1]), len(order)))]
    else:
        args = [p for p in plan.traced.position if p is not None]
    for arg in args:
        of = inputs[ins.user(arg)]
        jname = c_identifier(f"jacobian_{of.name}", taken)
        taken.add(jname)
        jdtype = of.dtype if of.dtype.kind == "f" else np.dtype(np.float64)
        jshape = (rows, of.size)  # as pb.compile gives it, also for a 0-d argument
        outputs.append(Array(jname, jdtype, jshape, "jacobian", of=of.name,
                             description=f"Jacobian with respect to {of.name}"))
        sources.append(FromNative(grad_at[arg]) if arg in grad_at else Zeros())
    return ExportEntry(name, compiled.mode, inputs, outputs, native_inputs, native_outputs,
                       sources, module, prepared.entry, compiled.device, _memory(compiled),
                       ins.captured, prepared.pipeline.lowering_text)


# -- hessian, hessian_reverse, diaghessian --------------------------------------------------


def _second_derivative_entry(name: str, compiled: Compiled) -> ExportEntry:
    _check_device(name, compiled)
    plan: SecondDerivativeCall = compiled._plan
    program = plan.traced.program
    if plan.built is None:
        raise NotExportable(f"entry '{name}': the second derivatives need no native code "
                            "(the output is a constant, or the arguments are empty); there "
                            "is nothing to export")
    core = "hessian_reverse" if compiled.mode == "hessian_reverse" else "hessian"
    wrt = tuple(p for p in plan.traced.position if p is not None)
    prepared = pipeline.prepare(program, core, wrt=wrt, insertions=compiled.insertions)
    module = _module_for(name, compiled, prepared, plan.built)
    ins = _inputs(compiled, program, _free_leaf_names(compiled))
    inputs = ins.arrays
    total = sum(plan.sizes)
    native_inputs: list[int | Seed | Constant] = list(ins.native)
    for p in prepared.batched_args:
        i = plan.traced.position.index(p)
        native_inputs.append(Seed(plan.dtypes[i], inputs[ins.user(p)].shape, total,
                                  plan.offsets[i]))
    native_outputs = [(dt, sh) for sh, dt in program.result_types()][:prepared.num_results]
    n = len(native_outputs)
    block_at = {}
    for k, arg in enumerate(prepared.grad_args):
        block_at[arg] = n + k
        i = plan.traced.position.index(arg)
        native_outputs.append((plan.dtypes[i], (total, *inputs[ins.user(arg)].shape)))
    outputs: list[Array] = []
    sources: list[FromNative | Zeros] = []
    taken = {a.name for a in inputs}
    for i, p in enumerate(plan.traced.position):
        if not plan.numeric[i] or p is None:
            if plan.numeric[i]:
                raise NotExportable(f"entry '{name}': argument {i} is fixed when compiling "
                                    "(a Python integer the function needs as a value); "
                                    "its second derivatives are zero and it is not an input")
            continue
        of = inputs[ins.user(p)]
        if compiled.mode == "diaghessian":
            hname = c_identifier(f"diaghessian_{of.name}", taken)
            outputs.append(Array(hname, plan.dtypes[i], of.shape, "diaghessian", of=of.name,
                                 description=f"Hessian diagonal for {of.name}"))
            sources.append(FromNative(block_at[p], diagonal=True, offset=plan.offsets[i])
                           if p in block_at else Zeros())
        else:
            hname = c_identifier(f"hessian_{of.name}", taken)
            hshape = (total, total)  # as pb.compile gives it, also for a 0-d argument
            outputs.append(Array(hname, plan.dtypes[i], hshape, "hessian", of=of.name,
                                 description=f"Hessian with respect to {of.name}"))
            sources.append(FromNative(block_at[p]) if p in block_at else Zeros())
        taken.add(hname)
    return ExportEntry(name, compiled.mode, inputs, outputs, native_inputs, native_outputs,
                       sources, module, prepared.entry, compiled.device, _memory(compiled),
                       ins.captured, prepared.pipeline.lowering_text)
