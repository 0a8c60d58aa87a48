"""`convert-array-to-loops`: array functions to fused loop kernels over flat buffers.

Input invariant: `func.func @NAME(tensor...) -> (tensor...)` whose body holds
`array` ops and ends in `func.return`; static shapes; element types f64, f32, i64, i1.

Output IR, destination-passing style:
* `func.func @NAME(inputs..., outputs..., temporaries...)` over flat `memref<N x T>`
  buffers (row-major, masks as `i8`), with no results. The host body is a schedule:
  one `func.call` per kernel, in program order. Attributes record the layout:
  `pullback.num_inputs`, `pullback.num_outputs`, `pullback.temp_bytes` (the size of
  each temporary, in order) and `pullback.signature` (the original tensor type).
  Callers own every buffer, so a memory plan can reuse temporaries across calls.
* `func.func @NAME__kI(reads..., out)`: one kernel per fused group (see
  `transforms.fusion`), `scf.for` nests with `memref`, `arith` and `math` ops.
* Matrix products stay recognisable: `func.call @pullback_matmul_f64(a, b, c, batch,
  m, n, k, trans_a, trans_b)` on row-major buffers cast to `memref<?xT>`, declared
  private. A transpose of the last two dimensions feeding a product becomes a flag.
  Each target supplies the implementation (BLAS on CPU).

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
    TensorType,
    UnitAttr,
    f32,
    f64,
    i64,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass

from pullback.compiler.conversion.element_emitter import ElementEmitter
from pullback.compiler.conversion.kernel_writer import KernelWriter, buffer_type
from pullback.compiler.conversion.kernels import build_kernel, map_kernel
from pullback.compiler.dialects import array as A
from pullback.compiler.transforms.fusion import FusionPlan, is_matmul_transpose, plan_fusion

NOALIAS = DictionaryAttr({"llvm.noalias": UnitAttr()})


def matmul_symbol(element_type: Attribute) -> str:
    """The external matrix-product function for an element type."""
    return f"pullback_matmul_{element_type}"


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
        temps: list[int] = []
        for op in self.plan.roots:
            v = op.results[0]
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
            "pullback.signature": self.function.function_type,
        })
        hw = KernelWriter(host)
        bufs = host.body.block.args
        for op in self.plan.roots:
            if isinstance(op, A.MatmulOp):
                self._matmul(hw, op, {v: bufs[i] for v, i in home.items()})
            else:
                self._kernel(hw, op, op.results[0], home)
        for v, j in copies:
            self._kernel(hw, None, v, home, out_index=j)
        hw.add(func.ReturnOp())
        for kernel in self.kernels:
            self.module.body.block.insert_op_before(kernel, self.function)
        for ext in self.externs.values():
            self.module.body.block.insert_op_before(ext, self.function)
        self.module.body.block.insert_op_before(host, self.function)
        self.function.detach()
        self.function.erase()

    def _kernel(self, hw: KernelWriter, op: Operation | None, value: SSAValue,
                home: dict[SSAValue, int], out_index: int | None = None) -> None:
        """Add kernel `@NAME__kI` computing `value` (a copy when `op` is None)."""
        reads = [value] if op is None else self.plan.leaves(list(op.operands))
        out = home[value] if out_index is None else out_index
        hargs = hw.entry.args
        arg_types = [hargs[home[v]].type for v in reads] + [hargs[out].type]
        kernel = func.FuncOp(f"{self.name}__k{len(self.kernels)}", (arg_types, []),
                             visibility="private", arg_attrs=_noalias(len(arg_types)))
        kw = KernelWriter(kernel)
        kargs = kernel.body.block.args
        emitter = ElementEmitter(kw, dict(zip(reads, kargs[:-1], strict=True)))
        if op is None:
            map_kernel(emitter, value, kargs[-1])
        else:
            build_kernel(emitter, op, kargs[-1])
        kw.add(func.ReturnOp())
        self.kernels.append(kernel)
        hw.add(func.CallOp(kernel.sym_name.data, [hargs[home[v]] for v in reads] + [hargs[out]],
                           []))

    def _matmul(self, hw: KernelWriter, op: A.MatmulOp, bufs: dict[SSAValue, SSAValue]) -> None:
        el = A.element_type_of(op.result)
        if el not in (f64, f32):
            raise NotImplementedError(f"array.matmul has no lowering for element type {el}")
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


def _is_array_function(op: func.FuncOp) -> bool:
    t = op.function_type
    return any(isinstance(x, TensorType) for x in (*t.inputs, *t.outputs))


@dataclass(frozen=True)
class ConvertArrayToLoopsPass(ModulePass):
    """Lower array functions to a host schedule of fused loop kernels (module docstring)."""

    name = "convert-array-to-loops"

    function: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
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
                _Lowering(op, f).run()

