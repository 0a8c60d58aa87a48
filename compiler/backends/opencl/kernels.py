"""Kernel functions → `__kernel`s: one per phase, shaped for the device.

* parallel: the dimensions of the phase's `scf.parallel` are collapsed into one flat
  NDRange index (any depth), the global size padded to the local size and guarded.
* group-reduce: a reducing `scf.parallel` under a small parallel extent is split
  across a work-group along its first dimension (any others run whole per step).
  CPU devices give each work-item a contiguous chunk; GPU devices stride by the group
  size so neighbours read neighbours (coalesced). Each partial starts from the init
  values (the identities); the combiners are the ops of the `scf.reduce` regions. A
  local-memory tree combines the partials and work-item 0 runs the rest.
* serial: anything else runs as written on one work-item.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects import func, memref, scf
from xdsl.dialects.builtin import MemRefType, StringAttr
from xdsl.ir import Operation, SSAValue

from pullback.compiler.backends.opencl.c_types import buffer_element_type, c_type
from pullback.compiler.backends.opencl.emit import Writer
from pullback.compiler.backends.opencl.phases import Dim, Phase, body_ops, dims, split_phases


@dataclass(frozen=True)
class Target:
    """What shapes the kernels: the device kind ("cpu" or "gpu") and its limits."""

    style: str
    max_group: int
    compute_units: int

    def parallel_local(self, total: int) -> int:
        return _pow2_at_most(min(64 if self.style == "cpu" else 256, self.max_group),
                             max(total, 1))

    def reduce_local(self) -> int:
        return _pow2_at_most(16 if self.style == "cpu" else 256, self.max_group)

    def split(self, extent: int, trip: int) -> bool:
        """Whether a reduction of `trip` steps under `extent` parallel ones is split."""
        if self.style == "cpu":
            return trip >= 4096 and extent < 4 * self.compute_units
        return trip >= 256 and extent < 64 * self.compute_units


def _pow2_at_most(limit: int, want: int) -> int:
    n = 1
    while n * 2 <= limit and n < want:
        n *= 2
    return n


@dataclass(frozen=True)
class Launch:
    """One enqueue: the `__kernel` name and its NDRange (global padded to local)."""

    kernel: str
    global_size: tuple[int, ...]
    local_size: tuple[int, ...]
    kind: str


@dataclass
class KernelCode:
    """The OpenCL C of one kernel function and the launches that run it, in order."""

    name: str
    source: str
    launches: list[Launch]


def written_args(fn: func.FuncOp) -> set[int]:
    """Indices of the arguments a function stores into (through casts)."""
    args = fn.body.block.args
    alias: dict[SSAValue, SSAValue] = {a: a for a in args}
    out: set[int] = set()
    for op in fn.walk():
        if isinstance(op, memref.CastOp) and op.source in alias:
            alias[op.dest] = alias[op.source]
        if isinstance(op, memref.StoreOp) and op.memref in alias:
            out.add(args.index(alias[op.memref]))  # type: ignore[arg-type]
    return out


def _params(fn: func.FuncOp, restrict: set[int]) -> tuple[str, dict[SSAValue, str]]:
    written = written_args(fn)
    parts, names = [], {}
    for i, arg in enumerate(fn.body.block.args):
        name = f"b{i}"
        names[arg] = name
        t = arg.type
        if isinstance(t, MemRefType):
            const = "" if i in written else "const "
            res = " restrict" if i in restrict else ""
            parts.append(f"__global {const}{buffer_element_type(t)}*{res} {name}")
        else:
            parts.append(f"const {c_type(t)} {name}")
    return ", ".join(parts), names


def translate_kernel(fn: func.FuncOp, target: Target, restrict: set[int]) -> KernelCode:
    """The `__kernel`s of kernel function `fn` (one per phase)."""
    name = fn.sym_name.data
    params, names = _params(fn, restrict)
    phases = split_phases(fn.body.block)
    parts, launches = [], []
    for i, phase in enumerate(phases):
        kname = name if len(phases) == 1 else f"{name}__p{i}"
        body, launch = _phase(phase, kname, names, target)
        local = launch.local_size[0]
        kind = fn.attributes.get("pullback.kernel")
        note = f" /* {kind.data}, {launch.kind} */" if isinstance(kind, StringAttr) else (
            f" /* {launch.kind} */")
        parts.append(f"__kernel __attribute__((reqd_work_group_size({local}, 1, 1))){note}\n"
                     f"void {kname}({params}) {{\n" + "\n".join(body) + "\n}\n")
        launches.append(launch)
    return KernelCode(name, "\n".join(parts), launches)


def _phase(phase: Phase, kname: str, names: dict[SSAValue, str],
           target: Target) -> tuple[list[str], Launch]:
    w = Writer(names)
    split = phase.split_point()
    extent = phase.parallel_extent
    if split is not None and target.split(extent, (dims(split[1]) or [])[0].trip):
        local = target.reduce_local()
        _group_reduce(w, phase, split, local, target.style)
        return w.lines, Launch(kname, (extent * local,), (local,), "group-reduce")
    if phase.grid:
        local = target.parallel_local(extent)
        w.line("const long gid = get_global_id(0);")
        if extent % local:
            w.line(f"if (gid >= {extent}L) return;")
        _grid_ivs(w, phase, "gid")
        w.ops(phase.recompute + phase.head + phase.inner_ops())
        padded = -(-extent // local) * local
        return w.lines, Launch(kname, (padded,), (local,), "parallel")
    w.ops(phase.recompute + phase.ops)
    return w.lines, Launch(kname, (1,), (1,), "serial")


def _define_iv(w: Writer, dim: Dim, index: str) -> None:
    """Induction variable of `dim` at iteration `index` (a C expression)."""
    lb, step = w.name(dim.lower), w.name(dim.step)
    expr = index if step == "1L" else f"({index}) * {step}"
    if lb != "0L":
        expr = f"{lb} + {expr}"
    w.define(dim.iv, f"({c_type(dim.iv.type)})({expr})")


def _grid_ivs(w: Writer, phase: Phase, flat: str) -> None:
    """Induction variables of the grid from one flat index (row-major)."""
    grid = phase.dims
    for k, dim in enumerate(grid):
        stride = 1
        for d in grid[k + 1:]:
            stride *= d.trip
        expr = flat if stride == 1 else f"{flat} / {stride}L"
        _define_iv(w, dim, f"({expr}) % {dim.trip}L" if k > 0 else expr)


def _group_reduce(w: Writer, phase: Phase,
                  split: tuple[list[Operation], scf.ParallelOp, list[Operation]],
                  local: int, style: str) -> None:
    pre, loop, post = split
    types = [v.type for v in loop.res]
    for j, t in enumerate(types):
        w.line(f"__local {c_type(t)} red{j}[{local}];")
    w.line("const long grp = get_group_id(0);")
    w.line("const long lid = get_local_id(0);")
    _grid_ivs(w, phase, "grp")
    w.ops(phase.recompute + phase.head + pre)
    _split_loop(w, loop, local, style)
    w.open("if (lid == 0)")
    for j, res in enumerate(loop.res):
        w.define(res, f"red{j}[0]")
    w.ops(post)
    w.close()


UNROLL = 4  # independent accumulators per work-item on CPU devices (hides add latency)


def _split_loop(w: Writer, loop: scf.ParallelOp, local: int, style: str) -> None:
    """Each work-item reduces its share into `accJ`, then a local-memory tree."""
    trip = (dims(loop) or [])[0].trip
    reduce = loop.body.block.last_op
    assert isinstance(reduce, scf.ReduceOp)
    types = [v.type for v in loop.res]
    lanes = UNROLL if style == "cpu" else 1
    accs = [[w.fresh("acc") for _ in types] for _ in range(lanes)]
    for lane in accs:
        for acc, t, init in zip(lane, types, loop.initVals, strict=True):
            w.line(f"{c_type(t)} {acc} = {w.name(init)};")
    t_var = w.fresh("t")
    if style == "cpu":
        chunk = -(-trip // local)
        w.line(f"const long {t_var}1 = min(lid * {chunk}L + {chunk}L, {trip}L);")
        w.line(f"long {t_var} = lid * {chunk}L;")
        w.open(f"for (; {t_var} + {lanes} <= {t_var}1; {t_var} += {lanes})")
        for u, lane in enumerate(accs):
            w.open("")
            _step(w, loop, lane, f"{t_var} + {u}")
            w.close()
        w.close()
        w.open(f"for (; {t_var} < {t_var}1; ++{t_var})")
    else:
        w.open(f"for (long {t_var} = lid; {t_var} < {trip}L; {t_var} += {local}L)")
    _step(w, loop, accs[0], t_var)
    w.close()
    for j, region in enumerate(reduce.reductions):
        total = accs[0][j]
        for lane in accs[1:]:
            total = w.combine(region, total, lane[j])
        w.line(f"red{j}[lid] = {total};")
    w.line("barrier(CLK_LOCAL_MEM_FENCE);")
    w.open(f"for (int s = {local // 2}; s > 0; s >>= 1)")
    w.open("if (lid < s)")
    for j, region in enumerate(reduce.reductions):
        w.line(f"red{j}[lid] = {w.combine(region, f'red{j}[lid]', f'red{j}[lid + s]')};")
    w.close()
    w.line("barrier(CLK_LOCAL_MEM_FENCE);")
    w.close()


def _step(w: Writer, loop: scf.ParallelOp, accs: list[str], step_index: str) -> None:
    """The iterations of the reduction at `step_index` of its first dimension (all of
    its other dimensions), combined into `accs`."""
    reduce = loop.body.block.last_op
    assert isinstance(reduce, scf.ReduceOp)
    _define_iv(w, (dims(loop) or [])[0], step_index)
    depth = w.open_dims(loop, 1)
    w.ops(body_ops(loop.body.block))
    w.accumulate(reduce, accs)
    for _ in range(depth):
        w.close()
