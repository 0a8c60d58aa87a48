"""convert-array-to-loops: kernel structure and fusion, read from the kernel-level IR."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from xdsl.builder import ImplicitBuilder
from xdsl.dialects import func, math, memref, scf
from xdsl.dialects.builtin import FunctionType, ModuleOp, TensorType, f64
from xdsl.ir import Attribute, SSAValue
from xdsl.parser import Parser

from pullback.compiler.backends.llvm import compile_function
from pullback.compiler.context import make_context
from pullback.compiler.conversion.array_to_loops import ConvertArrayToLoopsPass
from pullback.compiler.dialects import array as A
from pullback.compiler.passes import get_pass


def build(make: Callable[..., Sequence[SSAValue]], arg_types: Sequence[Attribute],
          name: str = "f") -> ModuleOp:
    fn = func.FuncOp(name, (list(arg_types), []))
    with ImplicitBuilder(fn.body) as args:
        outs = list(make(*args))
        func.ReturnOp(*outs)
    fn.function_type = FunctionType.from_lists(list(arg_types), [o.type for o in outs])
    return ModuleOp([fn])


def lower(module: ModuleOp, name: str = "f") -> ModuleOp:
    ConvertArrayToLoopsPass(function=name).apply(make_context(), module)
    module.verify()
    return module


def kernels(module: ModuleOp) -> list[func.FuncOp]:
    return [op for op in module.body.block.ops
            if isinstance(op, func.FuncOp) and "__k" in op.sym_name.data]


def host(module: ModuleOp, name: str = "f") -> func.FuncOp:
    return next(op for op in module.body.block.ops
                if isinstance(op, func.FuncOp) and op.sym_name.data == name)


def count(op: func.FuncOp, cls: type) -> int:
    return sum(isinstance(o, cls) for o in op.walk())


N = 1_000_000


def test_elementwise_chain_is_one_loop() -> None:
    t = TensorType(f64, (N,))

    def make(x: SSAValue, y: SSAValue) -> list[SSAValue]:
        v = A.ExpOp(x).result
        for op in (A.MulOp, A.AddOp, A.SubOp, A.MaximumOp, A.MinimumOp, A.MulOp, A.AddOp):
            v = op(v, y).result
        return [v]

    m = lower(build(make, [t, t]))
    (k,) = kernels(m)
    assert count(k, scf.ForOp) == 1
    assert host(m).attributes["pullback.temp_bytes"].get_values() == ()


def test_reduction_of_elementwise_does_not_materialize() -> None:
    t = TensorType(f64, (300, 400))
    m = lower(build(lambda x, y: [A.ReduceSumOp(A.MulOp(A.ExpOp(x), y), [0, 1]).result],
                    [t, t]))
    (k,) = kernels(m)
    assert count(k, memref.StoreOp) == 1  # only the result
    assert host(m).attributes["pullback.temp_bytes"].get_values() == ()
    fors = [o for o in k.walk() if isinstance(o, scf.ForOp)]
    assert len(fors) == 1 and len(fors[0].iter_args) == 1  # one flat loop carrying the sum


def test_broadcast_and_transpose_fuse() -> None:
    def make(x: SSAValue, b: SSAValue) -> list[SSAValue]:
        xt = A.TransposeOp(x, [1, 0]).result
        return [A.TanhOp(A.AddOp(xt, A.BroadcastOp(b, (4, 3)))).result]

    m = lower(build(make, [TensorType(f64, (3, 4)), TensorType(f64, (3,))]))
    assert len(kernels(m)) == 1


def test_costly_value_with_two_uses_is_materialized_once() -> None:
    t = TensorType(f64, (64,))

    def make(x: SSAValue) -> list[SSAValue]:
        e = A.ExpOp(A.SinOp(x)).result
        return [A.ReduceSumOp(e, [0]).result, A.ReduceMaxOp(e, [0]).result]

    m = lower(build(make, [t]))
    assert len(kernels(m)) == 3  # exp(sin(x)) once, then the two reductions
    assert host(m).attributes["pullback.temp_bytes"].get_values() == (64 * 8,)
    assert sum(count(k, math.ExpOp) for k in kernels(m)) == 1


def test_cheap_value_with_two_uses_is_recomputed() -> None:
    t = TensorType(f64, (64,))

    def make(x: SSAValue, y: SSAValue) -> list[SSAValue]:
        s = A.AddOp(x, y).result
        return [A.ReduceSumOp(s, [0]).result, A.ReduceMaxOp(s, [0]).result]

    m = lower(build(make, [t, t]))
    assert len(kernels(m)) == 2
    assert host(m).attributes["pullback.temp_bytes"].get_values() == ()


def test_matmul_is_an_external_call_with_transpose_flag() -> None:
    def make(a: SSAValue, b: SSAValue) -> list[SSAValue]:
        return [A.MatmulOp(a, A.TransposeOp(b, [1, 0]).result).result]

    m = lower(build(make, [TensorType(f64, (3, 4)), TensorType(f64, (5, 4))]))
    calls = [o for o in host(m).walk() if isinstance(o, func.CallOp)]
    assert [c.callee.string_value() for c in calls] == ["pullback_matmul_f64"]
    assert kernels(m) == []
    decl = next(o for o in m.body.block.ops if isinstance(o, func.FuncOp)
                and o.sym_name.data == "pullback_matmul_f64")
    assert decl.is_declaration


def test_host_signature_is_destination_passing() -> None:
    t = TensorType(f64, (2, 3))
    m = lower(build(lambda x: [A.ExpOp(A.ExpOp(x)).result, x], [t]))
    h = host(m)
    assert len(h.function_type.inputs) == 3 and len(h.function_type.outputs) == 0
    assert h.attributes["pullback.num_inputs"].value.data == 1
    assert h.attributes["pullback.num_outputs"].value.data == 2


def test_other_functions_are_dropped_and_ir_round_trips() -> None:
    t = TensorType(f64, (4,))
    m = build(lambda x: [A.NegOp(x).result], [t], "g")
    other = build(lambda x: [A.ExpOp(x).result], [t], "f").body.block.first_op
    assert other is not None
    m.body.block.add_op(other.clone())
    lower(m, "f")
    names = {op.sym_name.data for op in m.body.block.ops if isinstance(op, func.FuncOp)}
    assert names == {"f", "f__k0"}
    text = str(m)
    assert Parser(make_context(), text).parse_module().is_structurally_equivalent(m)


def test_registered_pass_name() -> None:
    assert get_pass("convert-array-to-loops") is ConvertArrayToLoopsPass
    assert get_pass("convert-loops-to-llvm").name == "convert-loops-to-llvm"


def test_fused_program_matches_numpy() -> None:
    t = TensorType(f64, (50, 40))

    def make(x: SSAValue, y: SSAValue) -> list[SSAValue]:
        e = A.ExpOp(A.SinOp(x)).result
        s = A.ReduceSumOp(A.MulOp(e, y), [1]).result
        z = A.SubOp(e, A.BroadcastOp(A.ReshapeOp(s, (50, 1)), (50, 40))).result
        return [s, A.ReduceMaxOp(z, [0]).result]

    x, y = np.random.default_rng(1).normal(size=(2, 50, 40))
    s, mx = compile_function(build(make, [t, t]), "f").run([x, y])
    e = np.exp(np.sin(x))
    np.testing.assert_allclose(s, (e * y).sum(1), rtol=1e-12)
    np.testing.assert_allclose(mx, (e - (e * y).sum(1, keepdims=True)).max(0), rtol=1e-12)
