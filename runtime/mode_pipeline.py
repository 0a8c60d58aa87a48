"""The pass pipeline of each runtime mode, as the text the runtime runs.

`pipeline_for` gives, for a traced program in a mode on a device, the complete
pipeline text (xDSL's `a,b{opt=1},c` syntax) from the traced module to the last
pass: `expand-forward` where the program has `pb.forwarddiff` regions, the AD passes of
the mode, `drop-derivative-terms`, `simplify,cse,dce`, then the device's lowering
(`keep-functions` of the entry unless the mode's passes kept only it already,
`inline-checkpoints`, `drop-eager-updates`, `drop-identities`, `schedule-writes`,
`fuse`, `bufferize`, `convert-kernels-to-loops`, `memory-plan` and, for the CPU,
`expand-math`, `host-call-status`, `convert-parallel-to-for`, `convert-loops-to-llvm`).
The runtime parses and runs that same text (`pullback.compiler.pass_runner`), so
`pullback opt` replays it.
What a backend does after its last pass (llvmlite translation, the packed entry,
OpenCL C) is not a pass and not in the text.

Every option is known before the first pass runs: sizes and indices come from the
traced function's types. The Hessian modes also need which arguments reach the
output (the arguments `autodiff` returns a gradient for): that is found by running
the mode's `autodiff` passes on a copy of the traced module first.

`pb.compile(..., passes={"after": {"simplify": ["my-pass"]}, "before": {...}})`
inserts registered passes next to every run of an anchor pass (`insertions_of`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp
from xdsl.passes import ModulePass

from pullback.compiler.autodiff.forward_region import has_forward_regions
from pullback.compiler.autodiff.functions import is_float
from pullback.compiler.context import make_context
from pullback.compiler.dialects.array import shape_of
from pullback.compiler.passes import get_pass, is_builtin, parse_pipeline, pass_names, pass_text
from pullback.devices import backend_of
from pullback.program import Program

CLEANUP = ("drop-derivative-terms", "simplify", "cse", "dce")
"""The array-level passes after the AD passes of every mode."""

INSERT_WHERE = ("after", "before")

PassInsertions = Mapping[str, Mapping[str, Sequence[str]]]
"""`pb.compile`'s `passes=`: `{"after"|"before": {anchor pass: [pass text, ...]}}`."""

Insertions = tuple[tuple[str, str, tuple[str, ...]], ...]
"""(where, anchor pass, pass texts) triples, sorted: `passes=` in hashable form."""


@dataclasses.dataclass(frozen=True)
class ArrayPipeline:
    """The array-level passes of a mode and what its entry function returns."""

    passes: tuple[str, ...]
    entry: str
    grad_args: tuple[int, ...] | None
    """Arguments whose derivatives follow the results; None: the entry's `pullback.wrt`."""
    batched_args: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class ModePipeline:
    """A mode's whole pipeline: array-level passes, then the device's lowering."""

    array: ArrayPipeline
    lowering: tuple[str, ...]
    array_passes: tuple[str, ...]
    """The array-level pass texts with inserted passes (`array.passes` has none)."""

    @property
    def entry(self) -> str:
        return self.array.entry

    @property
    def array_text(self) -> str:
        return ",".join(self.array_passes)

    @property
    def lowering_text(self) -> str:
        return ",".join(self.lowering)

    @property
    def text(self) -> str:
        """The pipeline text from the traced module to the last pass."""
        return ",".join((*self.array_passes, *self.lowering))


def insertions_of(passes: PassInsertions | None) -> Insertions:
    """`pb.compile`'s `passes=` checked: `{"after"|"before": {anchor: [pass text, ...]}}`,
    anchors and inserted passes registered (`pullback.compiler.register_pass`)."""
    if not passes:
        return ()
    if not isinstance(passes, Mapping) or set(passes) - set(INSERT_WHERE):
        raise ValueError(
            f"passes= takes a dict with keys 'after' and/or 'before', each mapping a pass "
            f"name to a list of pass texts to insert, e.g. "
            f"{{'after': {{'simplify': ['my-pass']}}}}; got {passes!r}")
    out = []
    for where, anchors in passes.items():
        if not isinstance(anchors, Mapping):
            raise ValueError(f"passes[{where!r}] must map a pass name to a list of pass "
                             f"texts, got {anchors!r}")
        for anchor, texts in anchors.items():
            _check_registered(anchor, f"passes[{where!r}] anchor")
            if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
                raise ValueError(f"passes[{where!r}][{anchor!r}] must be a list of pass texts "
                                 f"(e.g. ['my-pass', 'dce']), got {texts!r}")
            out.append((where, anchor, tuple(p for t in texts for p in _canonical(t))))
    return tuple(sorted(out))


def only_builtin(insertions: Insertions) -> bool:
    """Whether every inserted pass is one of pullback's own (whose code the disk cache's
    key covers)."""
    return all(is_builtin(_name(t)) for _, _, texts in insertions for t in texts)


def _check_registered(name: Any, what: str) -> None:
    if name not in pass_names():
        raise ValueError(f"{what} {name!r} is not a registered pass; registered passes: "
                         f"{', '.join(pass_names())}")


def _canonical(text: str) -> tuple[str, ...]:
    """The passes of pipeline text `text`, each as the pipeline prints it (checked
    against the registry)."""
    from xdsl.utils.arg_spec import parse_pipeline as parse_specs

    for spec in parse_specs(text):
        _check_registered(spec.name, "inserted pass")
    return tuple(pass_text(p) for p in parse_pipeline(text).passes)


def _name(text: str) -> str:
    return text.partition("{")[0]


def pipeline_for(program: Program, mode: str, device: str, *, cotangents: tuple[int, ...] = (),
                 wrt: tuple[int, ...] = (), insertions: Insertions = ()) -> ModePipeline:
    """The pipeline of `program` in `mode` for `device` (module docstring)."""
    array = array_pipeline(program, mode, cotangents=cotangents, wrt=wrt)
    lowering = _split(_lowering_text(device, array.entry))
    kept = [p for p in array.passes if _name(p) == "keep-functions"]
    if kept and lowering[0] == kept[-1] and not insertions:  # only the entry is left
        lowering = lowering[1:]
    names = {_name(p) for p in (*array.passes, *lowering)}
    for _, anchor, _ in insertions:
        if anchor not in names:
            raise ValueError(f"passes= anchor {anchor!r} is not in this pipeline; its passes: "
                             f"{', '.join(dict.fromkeys(map(_name, (*array.passes, *lowering))))}")
    return ModePipeline(array, _insert(lowering, insertions),
                        _insert(list(array.passes), insertions))


def _lowering_text(device: str, entry: str) -> str:
    if backend_of(device)[0] == "opencl":
        from pullback.compiler.backends.kernel_level import kernel_pipeline

        return kernel_pipeline(entry)
    from pullback.compiler.backends.llvm.compile import llvm_pipeline

    return llvm_pipeline(entry)


def _split(text: str) -> list[str]:
    return [pass_text(p) for p in parse_pipeline(text).passes]


def _insert(passes: list[str], insertions: Insertions) -> tuple[str, ...]:
    """`passes` with the inserted ones next to every run of their anchors."""
    before = {a: t for w, a, t in insertions if w == "before"}
    after = {a: t for w, a, t in insertions if w == "after"}
    out: list[str] = []
    for p in passes:
        out += [*before.get(_name(p), ()), p, *after.get(_name(p), ())]
    return tuple(out)


# ----------------------------------------------------------------------------
# The array level of each mode
# ----------------------------------------------------------------------------


def array_pipeline(program: Program, mode: str, *, cotangents: tuple[int, ...] = (),
                   wrt: tuple[int, ...] = ()) -> ArrayPipeline:
    """The array-level passes of `program` in `mode`, and its entry function.

    value: the cleanup only. gradient / pullback: `autodiff` (seeded for gradient),
    `keep-functions` of the `_vjp`. jacobian: `autodiff` with the output's cotangent,
    `vmap` over it, `keep-functions`. hessian: `autodiff{seed}`, `jvp` over it,
    `bind-zeros` for the tangents of arguments not differentiated, `vmap` over the
    tangents, `keep-results` of the second derivatives. hessian_reverse:
    `autodiff{seed}`, `autodiff` over it with the gradients' cotangents, `vmap` over
    those, `keep-results`. Every mode ends in `CLEANUP`.
    """
    name = program.name
    wrt = wrt or tuple(program.diff_args())
    fn = function_named(program.module, name)
    expand = _expand_forward(program.module, mode)
    if mode == "value":
        return ArrayPipeline((*expand, *CLEANUP), name, ())
    autodiff = get_pass("autodiff")
    if mode in ("gradient", "pullback"):
        first = autodiff(func=name, wrt=wrt, cotangents=cotangents, seed=(mode == "gradient"))
        return _array(expand, [first], name + "_vjp", None)
    n = len(fn.body.block.args)
    if mode == "jacobian":
        size = _size(shape_of(fn.function_type.outputs.data[cotangents[0]]))
        return _array(expand, [autodiff(func=name, wrt=wrt, cotangents=cotangents),
                       get_pass("vmap")(func=name + "_vjp", args=(n,), size=size,
                                        broadcast=False)], name + "_vjp_vmap", None)
    seeded = autodiff(func=name, wrt=wrt, seed=True)
    ctx, copy = make_context(), program.module.clone()
    vjp = _applied(seeded, ctx, copy, name + "_vjp")
    grads = int_array_attr(vjp, "pullback.wrt")
    if not grads:
        return _array(expand, [seeded], name, ())
    size = sum(_size(shape_of(fn.body.block.args[i])) for i in wrt)
    outputs = vjp.function_type.outputs.data
    num_out = len(outputs)
    passes: list[ModulePass] = [seeded]
    if mode == "hessian":
        fn_name = name + "_vjp_jvp"
        tangents = [i for i, a in enumerate(vjp.body.block.args) if is_float(a)]
        passes += [get_pass("jvp")(func=name + "_vjp"),
                   get_pass("bind-zeros")(func=fn_name, args=tuple(
                       n + k for k, i in enumerate(tangents) if i not in wrt))]
        batch_args, seconds = wrt, grads
        float_out = [k for k, t in enumerate(outputs) if is_float(t)]
        keep = tuple(num_out + float_out.index(k) for k in range(num_out - len(grads), num_out))
    elif mode == "hessian_reverse":
        fn_name = name + "_vjp_vjp"
        second = autodiff(func=name + "_vjp", wrt=grads,
                          cotangents=tuple(range(num_out - len(grads), num_out)))
        seconds = int_array_attr(_applied(second, ctx, copy, fn_name), "pullback.wrt")
        passes.append(second)
        batch_args = grads
        keep = tuple(range(num_out, num_out + len(seconds)))
    else:
        raise ValueError(f"no array pipeline for mode '{mode}'")
    passes += [get_pass("vmap")(func=fn_name, args=tuple(range(n, n + len(batch_args))),
                                size=size),
               get_pass("keep-results")(func=fn_name + "_vmap", results=keep)]
    return _array(expand, passes, fn_name + "_vmap", seconds, batch_args)


def _expand_forward(module: ModuleOp, mode: str) -> tuple[str, ...]:
    """`expand-forward` first where the program has `ad.forward` regions (`pb.forwarddiff`):
    to their value alone in value mode, with their Jacobians in the others."""
    if not has_forward_regions(module):
        return ()
    return (pass_text(get_pass("expand-forward")(derivatives=mode != "value")),)


def _array(expand: tuple[str, ...], passes: list[ModulePass], entry: str,
           grad_args: tuple[int, ...] | None, batched: tuple[int, ...] = ()) -> ArrayPipeline:
    keep = get_pass("keep-functions")(names=(entry,))
    return ArrayPipeline((*expand, *(pass_text(p) for p in [*passes, keep]), *CLEANUP), entry,
                         grad_args, batched)


def _applied(p: ModulePass, ctx: Context, module: ModuleOp, made: str) -> func.FuncOp:
    """Apply `p` to `module` (a copy) and return the function `made` it adds."""
    p.apply(ctx, module)
    return function_named(module, made)


def function_named(module: ModuleOp, name: str) -> func.FuncOp:
    for op in module.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == name:
            return op
    raise KeyError(f"no function @{name} in the module")


def int_array_attr(fn: func.FuncOp, name: str) -> tuple[int, ...]:
    """The integers of `fn`'s dense-array attribute `name` (() if absent)."""
    attr = fn.attributes.get(name)
    if attr is None:
        return ()
    assert isinstance(attr, DenseArrayBase)
    return tuple(int(v) for v in attr.get_values())


def _size(shape: tuple[int, ...]) -> int:
    total = 1
    for d in shape:
        total *= d
    return total
