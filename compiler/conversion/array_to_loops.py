"""`convert-array-to-loops`: array functions to fused loop kernels over flat buffers.

Input invariant: `func.func @NAME(tensor...) -> (tensor...)` whose body holds
`array` ops and ends in `func.return`; static shapes; element types f64, f32, i64, i1.
Ops no result depends on are dropped.

Output IR, destination-passing style:
* `func.func @NAME(inputs..., outputs..., temporaries...)` over flat `memref<N x T>`
  buffers (row-major, masks as `i8`, 0-d arrays as `memref<1xT>`), with no results.
  The host body is a schedule: `memref.cast` ops and one `func.call` per kernel or
  matrix product, in dependence order. Attributes record the layout:
  `pullback.num_inputs`, `pullback.num_outputs`, `pullback.temp_bytes` (the size of
  each temporary, in order), `pullback.temp_kinds` ("residual" or "scratch" for
  each temporary: see `transforms.memory_kinds`, which also says how the
  `ad.reverse_begin` of a derivative is read and dropped before fusion),
  `pullback.signature` (the original tensor type) and `pullback.written_inputs`
  (the inputs an `array.assign` writes: in place by the kernel computing the value,
  or by a copy after every other step, as `conversion.in_place` decides).
  Callers own every buffer, so a memory plan can reuse temporaries across calls.
  Only values read by a later kernel, returned, or worth storing by the cost model of
  `transforms.fusion` get a buffer.
* `func.func @NAME__kI(reads..., writes...)`: one kernel per group of
  `transforms.fusion`, `scf.for` nests with `memref.load/store`, `arith` and `math`
  ops (index arithmetic in `index`). A *fused* kernel is one loop nest over an
  iteration domain: its innermost body computes every value it needs once per
  element as scalar SSA values, stores the values others need, and folds its
  reductions in as accumulators: carried by the loops over the reduced axes
  (`iter_args`, stored when those loops close; the reduced axes are made innermost
  when the last axis is reduced) or, for reductions that keep the last axis, added
  into the output buffer, which the kernel first fills with the identity. Loops
  whose iterations are independent carry `pullback.parallel`; loops whose
  `iter_args` are reductions that may be split across threads carry
  `pullback.reduction = ["add"|"mul"|"max"|"min", ...]`, one combiner per carried
  value, starting from its identity. Each kernel carries `pullback.kernel`, a
  readable kind ("elementwise", "reduce", "fused", "scan", "scatter", "copy").
* Matrix products stay recognisable: `func.call @pullback_matmul_f64(a, b, c, batch,
  m, n, k, trans_a, trans_b)` on row-major buffers cast to `memref<?xT>`, declared
  private. A transpose of the last two dimensions feeding a product becomes a flag.
  Each target supplies the implementation (BLAS on CPU).
* Host calls (`ad.callback_grad`) become `func.call @pullback_host_call_<T>(table,
  slot, unreached, n, src, dst)`, declared private: the target hands the `n`
  elements of `src` to host function `slot` of the callback table whose token is
  in the i64 buffer `table`, and writes the gradient it passes on into `dst`.
  `ad.callback` and `ad.hook` are the identity after AD and are dropped, like
  `ad.stop_gradient`.

The option `function` lowers only that function and drops every other function;
empty lowers every function with tensor arguments or results.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func, memref
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    ArrayAttr,
    DictionaryAttr,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    TensorType,
    UnitAttr,
    f32,
    f64,
    i64,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass

from pullback.compiler.autodiff.checkpoint import inline_checkpoints
from pullback.compiler.autodiff.eager_update import drop_eager_updates
from pullback.compiler.conversion.element_emitter import ElementEmitter
from pullback.compiler.conversion.fused_kernel import build_fused_kernel, kernel_kind
from pullback.compiler.conversion.in_place import plan_writes
from pullback.compiler.conversion.kernel_writer import KERNEL_KIND, KernelWriter, buffer_type
from pullback.compiler.conversion.kernels import build_kernel, map_kernel
from pullback.compiler.diagnostics import located
from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.ad import (
    CallbackGradOp,
    CallbackOp,
    HookOp,
    StopGradientOp,
)
from pullback.compiler.transforms.fusion import (
    FusionPlan,
    Kernel,
    is_matmul_transpose,
    plan_fusion,
)
from pullback.compiler.transforms.memory_kinds import (
    TEMP_KINDS,
    split_at_reverse_begin,
    temp_kinds,
)
from pullback.compiler.transforms.schedule_writes import schedule_writes

NOALIAS = DictionaryAttr({"llvm.noalias": UnitAttr()})


def matmul_symbol(element_type: Attribute) -> str:
    """The external matrix-product function for an element type."""
    return f"pullback_matmul_{element_type}"


HOST_CALL_PREFIX = "pullback_host_call_"


def host_call_symbol(element_type: Attribute) -> str:
    """The external host-call function for gradients of an element type."""
    return f"{HOST_CALL_PREFIX}{element_type}"


def _noalias(n: int) -> ArrayAttr[DictionaryAttr]:
    return ArrayAttr([NOALIAS] * n)


def _bytes(t: MemRefType) -> int:
    width = t.element_type.bitwidth  # type: ignore[attr-defined]
    return t.get_shape()[0] * max(1, width // 8)


class _Lowering:
    """Lowers one array function into a host schedule plus kernel functions."""

    def __init__(self, module: ModuleOp, function: func.FuncOp):
        self.module, self.function = module, function
        self.name = function.sym_name.data
        self.forward = split_at_reverse_begin(function)
        self.plan: FusionPlan = plan_fusion(function)
        self.kernels: list[func.FuncOp] = []
        self.externs: dict[str, func.FuncOp] = {}

    def run(self) -> None:
        block = self.function.body.block
        ret = block.last_op
        assert isinstance(ret, func.ReturnOp)
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
        writes = plan_writes(self.plan, outputs)
        home.update(writes.in_place)
        temps: list[int] = []
        staged: dict[SSAValue, int] = {}
        for v in writes.staged:
            staged[v] = len(types)
            types.append(buffer_type(v.type))
            temps.append(_bytes(types[-1]))
        for kernel in self.plan.kernels:
            for v in kernel.outputs:
                if v not in home:
                    home[v] = len(types)
                    types.append(buffer_type(v.type))
                    temps.append(_bytes(types[-1]))
        for v in self.plan.materialized - home.keys():
            raise NotImplementedError(f"no buffer for materialized value of {v.owner}")
        host = func.FuncOp(self.name, (types, []), arg_attrs=_noalias(len(types)))
        host.attributes.update({
            "pullback.num_inputs": IntegerAttr(n_in, i64),
            "pullback.num_outputs": IntegerAttr(n_out, i64),
            "pullback.temp_bytes": A.i64_array(temps),
            TEMP_KINDS: temp_kinds(self.plan, self.forward, home, n_in + n_out, len(temps)),
            "pullback.signature": self.function.function_type,
            "pullback.written_inputs": A.i64_array(
                sorted({i for _, i in writes.copies} | set(writes.in_place.values()))),
        })
        hw = KernelWriter(host)
        bufs = host.body.block.args
        for v, i in staged.items():
            self._copy(hw, v, home[v], i)
        for kernel in self.plan.kernels:
            if isinstance(kernel.op, A.MatmulOp):
                self._matmul(hw, kernel.op, {v: bufs[i] for v, i in home.items()})
            elif isinstance(kernel.op, CallbackGradOp):
                self._host_call(hw, kernel.op, {v: bufs[i] for v, i in home.items()})
            else:
                self._kernel(hw, kernel, home)
        for v, j in copies:
            self._copy(hw, v, home[v], j)
        for v, i in writes.copies:
            self._copy(hw, v, staged.get(v, home[v]), i)
        hw.add(func.ReturnOp())
        for kernel in self.kernels:
            self.module.body.block.insert_op_before(kernel, self.function)
        for ext in self.externs.values():
            self.module.body.block.insert_op_before(ext, self.function)
        self.module.body.block.insert_op_before(host, self.function)
        self.function.detach()
        self.function.erase()

    def _new_kernel(self, hw: KernelWriter, kind: str, reads: list[int], writes: list[int]
                    ) -> tuple[KernelWriter, tuple[SSAValue, ...]]:
        """Add kernel `@NAME__kI(reads..., writes...)` and its call; returns its writer."""
        hargs = hw.entry.args
        arg_types = [hargs[i].type for i in (*reads, *writes)]
        buffers = [*reads, *writes]
        attrs = ArrayAttr([NOALIAS if buffers.count(i) == 1 else DictionaryAttr({})
                           for i in buffers])
        kernel = func.FuncOp(f"{self.name}__k{len(self.kernels)}", (arg_types, []),
                             visibility="private", arg_attrs=attrs)
        kernel.attributes[KERNEL_KIND] = StringAttr(kind)
        self.kernels.append(kernel)
        hw.add(func.CallOp(kernel.sym_name.data, [hargs[i] for i in (*reads, *writes)], []))
        return KernelWriter(kernel), kernel.body.block.args

    def _kernel(self, hw: KernelWriter, kernel: Kernel, home: dict[SSAValue, int]) -> None:
        outputs = kernel.outputs
        kind = kernel_kind(kernel) if kernel.fused else _kind(kernel.op)
        kw, kargs = self._new_kernel(hw, kind, [home[v] for v in kernel.reads],
                                     [home[v] for v in outputs])
        n = len(kernel.reads)
        emitter = ElementEmitter(kw, dict(zip(kernel.reads, kargs[:n], strict=True)))
        if kernel.op is None:
            build_fused_kernel(emitter, kernel, dict(zip(outputs, kargs[n:], strict=True)))
        else:
            build_kernel(emitter, kernel.op, kargs[n])
        kw.add(func.ReturnOp())

    def _copy(self, hw: KernelWriter, value: SSAValue, src: int, dst: int) -> None:
        kw, kargs = self._new_kernel(hw, "copy", [src], [dst])
        map_kernel(ElementEmitter(kw, {value: kargs[0]}), value, kargs[1])
        kw.add(func.ReturnOp())

    def _matmul(self, hw: KernelWriter, op: A.MatmulOp, bufs: dict[SSAValue, SSAValue]) -> None:
        el = A.element_type_of(op.result)
        if el not in (f64, f32):
            raise NotImplementedError(
                located(op, f"array.matmul has no lowering for element type {el}"))
        dyn = MemRefType(el, [DYNAMIC_INDEX])
        symbol = matmul_symbol(el)
        if symbol not in self.externs:
            self.externs[symbol] = func.FuncOp.external(symbol, [dyn] * 3 + [i64] * 6, [])
        operands, flags = [], []
        for v in (op.lhs, op.rhs):
            folded = is_matmul_transpose(v)
            src = v.owner.operand if folded else v  # type: ignore[union-attr]
            operands.append(hw.add(memref.CastOp.get(bufs[src], dyn)))
            flags.append(int(folded))
        out = hw.add(memref.CastOp.get(bufs[op.result], dyn))
        shape = A.shape_of(op.result)
        batch = 1
        for d in shape[:-2]:
            batch *= d
        m, n, k = shape[-2], shape[-1], A.shape_of(op.lhs)[-1]
        sizes = [hw.constant(x, i64) for x in (batch, m, n, k, *flags)]
        hw.add(func.CallOp(symbol, [*operands, out, *sizes], []))


    def _host_call(self, hw: KernelWriter, op: CallbackGradOp,
                   bufs: dict[SSAValue, SSAValue]) -> None:
        el = A.element_type_of(op.result)
        if el not in (f64, f32):
            raise NotImplementedError(
                located(op, f"ad.callback_grad has no lowering for element type {el}"))
        dyn = MemRefType(el, [DYNAMIC_INDEX])
        table_type = MemRefType(i64, [DYNAMIC_INDEX])
        symbol = host_call_symbol(el)
        if symbol not in self.externs:
            self.externs[symbol] = func.FuncOp.external(
                symbol, [table_type, i64, i64, i64, dyn, dyn], [])
        table = hw.add(memref.CastOp.get(bufs[op.table], table_type))
        src = hw.add(memref.CastOp.get(bufs[op.operand], dyn))
        dst = hw.add(memref.CastOp.get(bufs[op.result], dyn))
        size = 1
        for d in A.shape_of(op.result):
            size *= d
        flags = [op.slot.value.data, int(op.unreached is not None), size]
        scalars = [hw.constant(x, i64) for x in flags]
        hw.add(func.CallOp(symbol, [table, *scalars, src, dst], []))


def _kind(op: Operation | None) -> str:
    match op:
        case A.CumsumOp():
            return "scan"
        case A.ScatterAddOp():
            return "scatter"
        case _:
            return "copy"


def _forward_identities(module: ModuleOp) -> None:
    """Replace each `ad.stop_gradient`, `ad.callback` and `ad.hook` by its operand: after
    AD they are the identity (innermost first: hook regions go with their op)."""
    for op in reversed(list(module.walk())):
        if isinstance(op, StopGradientOp | CallbackOp | HookOp):
            op.result.replace_all_uses_with(op.operand)
            op.detach()
            op.erase()


def _is_array_function(op: func.FuncOp) -> bool:
    """Every argument and result is a tensor (a function of no arrays returning none, as
    traced from constant outputs, too); kernels and host functions take memrefs."""
    t = op.function_type
    return all(isinstance(x, TensorType) for x in (*t.inputs, *t.outputs))


@dataclass(frozen=True)
class ConvertArrayToLoopsPass(ModulePass):
    """Lower array functions to a host schedule of fused loop kernels (module docstring)."""

    name = "convert-array-to-loops"

    function: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        inline_checkpoints(op)
        drop_eager_updates(op)
        _forward_identities(op)
        funcs = [f for f in op.body.block.ops if isinstance(f, func.FuncOp)]
        if self.function:
            chosen = [f for f in funcs if f.sym_name.data == self.function]
            if not chosen:
                names = ", ".join(f.sym_name.data for f in funcs)
                raise ValueError(f"no function @{self.function} in the module (has: {names})")
            for f in funcs:
                if f is not chosen[0]:
                    f.detach()
                    f.erase()
            funcs = chosen
        for f in funcs:
            if _is_array_function(f) and not f.is_declaration:
                schedule_writes(f)
                _Lowering(op, f).run()

