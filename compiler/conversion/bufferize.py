"""`bufferize`: scheduled array functions to host functions over flat buffers.

Input invariant: array functions as `fuse` writes them: a schedule of `kernel.fused`
(tensor form), `array.matmul` (operands possibly `array.transpose` flags) and
`ad.callback_grad` steps, then `array.assign`s and `func.return`.

Output IR, destination-passing style: `func.func @NAME(inputs..., outputs...,
temporaries...)` over flat `memref<N x T>` buffers (row-major, masks as `i8`, 0-d
arrays as `memref<1xT>`), with no results. Callers own every buffer, so a memory plan
can reuse temporaries across calls. A value gets a buffer when a step writes it: its
own temporary, an output's buffer, or, written in place, an input's (below). The body
is the schedule over those buffers:

* each `kernel.fused` in buffer form: it reads the buffers of its inputs and writes
  those of its results; the region is unchanged;
* copies as `kernel.fused` of kind "copy" (a region yielding its argument): a result
  that is an input or another result, a value assigned by a copy, an argument set
  aside before it is overwritten;
* `func.call @pullback_matmul_<T>(a, b, c, batch, m, n, k, trans_a, trans_b)` on
  buffers cast to `memref<?xT>` (private declaration added; each target supplies the
  implementation): a transpose flag reads the transposed value's buffer;
* `func.call @pullback_host_call_<T>(table, slot, unreached, n, src, dst)` for each
  `ad.callback_grad`: the target hands the `n` elements of `src` to host function
  `slot` of the callback table whose token is in the i64 buffer `table`, and writes the
  gradient it passes on into `dst`.

Attributes record the layout: `pullback.num_inputs`, `pullback.num_outputs`,
`pullback.temp_bytes` (the size of each temporary, in order), `pullback.temp_kinds`
("residual" or "scratch", `transforms.memory_kinds`), `pullback.signature` (the
original function type) and `pullback.written_inputs` (the inputs an `array.assign`
writes: in place by the step computing the value, or by a copy after every other
step, as `conversion.in_place` decides; a fused kernel that overwrites an input it
reads at the same element lists that store in `late`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects import func, memref
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    ArrayAttr,
    DictionaryAttr,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    TensorType,
    UnitAttr,
    f32,
    f64,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from pullback.compiler.conversion.in_place import plan_writes
from pullback.compiler.conversion.kernel_writer import KernelWriter, buffer_type
from pullback.compiler.diagnostics import located
from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.ad import CallbackGradOp
from pullback.compiler.dialects.kernel import (
    FusedOp,
    YieldOp,
    host_call_symbol,
    matmul_symbol,
)
from pullback.compiler.transforms.fuse import is_array_function
from pullback.compiler.transforms.fusion import (
    FusionPlan,
    Kernel,
    Reduction,
    element_reads,
    is_matmul_transpose,
    squeeze,
)
from pullback.compiler.transforms.memory_kinds import (
    FORWARD,
    REVERSE_SWEEP,
    TEMP_KINDS,
    temp_kinds,
)

NOALIAS = DictionaryAttr({"llvm.noalias": UnitAttr()})


def _noalias(n: int) -> ArrayAttr[DictionaryAttr]:
    return ArrayAttr([NOALIAS] * n)


def _bytes(t: MemRefType) -> int:
    width = t.element_type.bitwidth  # type: ignore[attr-defined]
    return t.get_shape()[0] * max(1, width // 8)


def inner_kernel(op: FusedOp) -> Kernel:
    """The fused kernel a `kernel.fused` with a domain describes, over its region's
    values (reads: the block arguments)."""
    written = op.yielded
    n = op.stores.value.data
    late = op.late_stores
    domain = op.domain_shape
    assert domain is not None
    reductions = []
    for v in written[n:]:
        red = v.owner
        assert isinstance(red, A.ReduceOp)
        reductions.append(Reduction(red, red.operand, red.axis_list))
    return Kernel(domain=domain, stores=list(written[:n]), reductions=reductions,
                  reads=list(op.block.args), late={written[i] for i in late})


@dataclass
class _Step:
    """One step of the schedule, over the values of the function."""

    op: Operation
    reads: list[SSAValue]
    outputs: list[SSAValue]
    stores: list[SSAValue] = field(default_factory=list[SSAValue])
    fused: bool = False
    late: set[SSAValue] = field(default_factory=set[SSAValue])
    function: func.FuncOp | None = None

    def element_reads(self) -> dict[SSAValue, bool]:
        op = self.op
        assert isinstance(op, FusedOp) and self.function is not None
        plan = FusionPlan(self.function, set(op.block.args))
        inner = element_reads(plan, inner_kernel(op))
        return {v: inner[a] for v, a in zip(op.inputs, op.block.args, strict=True)
                if a in inner}


def _source(v: SSAValue) -> SSAValue:
    """The buffer a matrix-product operand reads: a transpose flag reads its operand."""
    return v.owner.operand if is_matmul_transpose(v) else v  # type: ignore[union-attr]


def _steps(function: func.FuncOp) -> list[_Step]:
    steps: list[_Step] = []
    for op in function.body.block.ops:
        match op:
            case FusedOp():
                values = list(op.results)
                steps.append(_Step(op, list(op.inputs), values,
                                   values[:op.stores.value.data],
                                   op.domain is not None, function=function))
            case A.MatmulOp():
                steps.append(_Step(op, [_source(op.lhs), _source(op.rhs)], [op.result]))
            case CallbackGradOp():
                steps.append(_Step(op, list(op.operands), [op.result]))
            case A.TransposeOp() if all(
                    isinstance(u.operation, A.MatmulOp) for u in op.result.uses):
                pass
            case A.AssignOp() | func.ReturnOp():
                pass
            case _:
                raise ValueError(located(op, f"bufferize: '{op.name}' is not a step of a "
                                             "schedule; run fuse first"))
    return steps


def _forward(function: func.FuncOp, steps: list[_Step]) -> frozenset[SSAValue] | None:
    if REVERSE_SWEEP not in function.attributes:
        return None
    forward: set[SSAValue] = set()
    for step in steps:
        marks = step.op.attributes.get(FORWARD)
        indices = () if marks is None else marks.get_values()  # type: ignore[attr-defined]
        forward.update(step.outputs[int(i)] for i in indices)
    return frozenset(forward)


def copy_kernel(t: Attribute, src: SSAValue, dst: SSAValue) -> FusedOp:
    """A buffer-form kernel copying buffer `src` (holding a tensor of type `t`) to `dst`."""
    assert isinstance(t, TensorType)
    block = Block(arg_types=[t])
    block.add_op(YieldOp([block.args[0]]))
    return FusedOp([src], [dst], [], Region(block), kind="copy",
                   domain=squeeze(A.shape_of(block.args[0])), stores=1)


class _Bufferize:
    """Turns one scheduled array function into its host function."""

    def __init__(self, module: ModuleOp, function: func.FuncOp):
        self.module, self.function = module, function
        self.externs: dict[str, func.FuncOp] = {}

    def run(self) -> None:
        function = self.function
        block = function.body.block
        ret = block.last_op
        assert isinstance(ret, func.ReturnOp)
        steps = _steps(function)
        outputs = list(ret.operands)
        home: dict[SSAValue, int] = {v: i for i, v in enumerate(block.args)}
        n_in, n_out = len(block.args), len(outputs)
        types: list[MemRefType] = [buffer_type(v.type) for v in block.args]
        types += [buffer_type(v.type) for v in outputs]
        copies: list[tuple[SSAValue, int]] = []
        for j, v in enumerate(outputs):
            if v in home:
                copies.append((v, n_in + j))
            else:
                home[v] = n_in + j
        writes = plan_writes(function, steps, outputs)
        home.update(writes.in_place)
        temps: list[int] = []
        staged: dict[SSAValue, int] = {}
        for v in writes.staged:
            staged[v] = len(types)
            types.append(buffer_type(v.type))
            temps.append(_bytes(types[-1]))
        for step in steps:
            for v in step.outputs:
                if v not in home:
                    home[v] = len(types)
                    types.append(buffer_type(v.type))
                    temps.append(_bytes(types[-1]))
        name = function.sym_name.data
        host = func.FuncOp(name, (types, []), arg_attrs=_noalias(len(types)))
        host.attributes.update({
            "pullback.num_inputs": IntegerAttr(n_in, i64),
            "pullback.num_outputs": IntegerAttr(n_out, i64),
            "pullback.temp_bytes": A.i64_array(temps),
            TEMP_KINDS: temp_kinds(steps, _forward(function, steps), home, n_in + n_out,
                                   len(temps)),
            "pullback.signature": function.function_type,
            "pullback.written_inputs": A.i64_array(
                sorted({i for _, i in writes.copies} | set(writes.in_place.values()))),
        })
        hw = KernelWriter(host)
        bufs = host.body.block.args
        buffer = {v: bufs[i] for v, i in home.items()}
        for v, i in staged.items():
            hw.add(copy_kernel(v.type, bufs[home[v]], bufs[i]))
        for step in steps:
            match step.op:
                case A.MatmulOp() as op:
                    self._matmul(hw, op, buffer)
                case CallbackGradOp() as op:
                    self._host_call(hw, op, buffer)
                case FusedOp() as op:
                    late = [i for i, v in enumerate(step.stores) if v in step.late]
                    hw.add(FusedOp([buffer[v] for v in step.reads],
                                   [buffer[v] for v in step.outputs], [],
                                   op.detach_region(op.body), kind=op.kind.data,
                                   domain=op.domain_shape, stores=op.stores.value.data,
                                   late=late))
                    host.body.block.last_op.location = op.location  # type: ignore[union-attr]
        for v, j in copies:
            hw.add(copy_kernel(v.type, bufs[home[v]], bufs[j]))
        for v, i in writes.copies:
            hw.add(copy_kernel(v.type, bufs[staged.get(v, home[v])], bufs[i]))
        hw.add(func.ReturnOp())
        for ext in self.externs.values():
            self.module.body.block.insert_op_before(ext, function)
        self.module.body.block.insert_op_before(host, function)
        function.detach()
        function.erase()

    def _extern(self, symbol: str, inputs: list[Attribute]) -> None:
        if symbol not in self.externs and not any(
                isinstance(op, func.FuncOp) and op.sym_name.data == symbol
                for op in self.module.body.block.ops):
            self.externs[symbol] = func.FuncOp.external(symbol, inputs, [])

    def _matmul(self, hw: KernelWriter, op: A.MatmulOp, bufs: dict[SSAValue, SSAValue]) -> None:
        el = A.element_type_of(op.result)
        if el not in (f64, f32):
            raise NotImplementedError(
                located(op, f"array.matmul has no lowering for element type {el}"))
        dyn = MemRefType(el, [DYNAMIC_INDEX])
        symbol = matmul_symbol(el)
        self._extern(symbol, [dyn] * 3 + [i64] * 6)
        operands, flags = [], []
        for v in (op.lhs, op.rhs):
            operands.append(hw.add(memref.CastOp.get(bufs[_source(v)], dyn)))
            flags.append(int(is_matmul_transpose(v)))
        out = hw.add(memref.CastOp.get(bufs[op.result], dyn))
        shape = A.shape_of(op.result)
        batch = 1
        for d in shape[:-2]:
            batch *= d
        m, n, k = shape[-2], shape[-1], A.shape_of(op.lhs)[-1]
        sizes = [hw.constant(x, i64) for x in (batch, m, n, k, *flags)]
        call = func.CallOp(symbol, [*operands, out, *sizes], [])
        call.location = op.location
        hw.add(call)

    def _host_call(self, hw: KernelWriter, op: CallbackGradOp,
                   bufs: dict[SSAValue, SSAValue]) -> None:
        el = A.element_type_of(op.result)
        if el not in (f64, f32):
            raise NotImplementedError(
                located(op, f"ad.callback_grad has no lowering for element type {el}"))
        dyn = MemRefType(el, [DYNAMIC_INDEX])
        table_type = MemRefType(i64, [DYNAMIC_INDEX])
        symbol = host_call_symbol(el)
        self._extern(symbol, [table_type, i64, i64, i64, dyn, dyn])
        table = hw.add(memref.CastOp.get(bufs[op.table], table_type))
        src = hw.add(memref.CastOp.get(bufs[op.operand], dyn))
        dst = hw.add(memref.CastOp.get(bufs[op.result], dyn))
        size = 1
        for d in A.shape_of(op.result):
            size *= d
        flags = [op.slot.value.data, int(op.unreached is not None), size]
        scalars = [hw.constant(x, i64) for x in flags]
        call = func.CallOp(symbol, [table, *scalars, src, dst], [])
        call.location = op.location
        hw.add(call)


@dataclass(frozen=True)
class BufferizePass(ModulePass):
    """Give every value of a scheduled array function a buffer (module docstring)."""

    name = "bufferize"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for f in list(op.body.block.ops):
            if isinstance(f, func.FuncOp) and is_array_function(f) and not f.is_declaration:
                _Bufferize(op, f).run()
