"""convert-array-to-loops: kernel structure and fusion, read from the kernel-level IR."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from op_table import build
from xdsl.dialects import arith, func, math, memref, scf
from xdsl.dialects.builtin import FloatAttr, ModuleOp, StringAttr, TensorType, f64
from xdsl.ir import Attribute, SSAValue
from xdsl.parser import Parser

from pullback.compiler.autodiff.reverse import AutodiffPass
from pullback.compiler.backends.llvm import compile_function
from pullback.compiler.context import make_context
from pullback.compiler.conversion.array_to_loops import ConvertArrayToLoopsPass
from pullback.compiler.dialects import array as A
from pullback.compiler.passes import get_pass
from pullback.compiler.transforms.simplify import SimplifyPass


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


def parallels(op: func.FuncOp) -> list[scf.ParallelOp]:
    return [o for o in op.walk() if isinstance(o, scf.ParallelOp)]


def combiners(loop: scf.ParallelOp) -> list[type]:
    """The op of each combiner region of a reducing `scf.parallel`."""
    reduce = loop.body.block.last_op
    assert isinstance(reduce, scf.ReduceOp)
    return [type(r.block.first_op) for r in reduce.reductions]


def inits(loop: scf.ParallelOp) -> list[float]:
    """The constant init values of a reducing `scf.parallel`."""
    out = []
    for v in loop.initVals:
        assert isinstance(v.owner, arith.ConstantOp) and isinstance(v.owner.value, FloatAttr)
        out.append(v.owner.value.value.data)
    return out


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
    assert count(k, scf.ParallelOp) == 1 and count(k, scf.ForOp) == 0
    assert host(m).attributes["pullback.temp_bytes"].get_values() == ()


def test_reduction_of_elementwise_does_not_materialize() -> None:
    t = TensorType(f64, (300, 400))
    m = lower(build(lambda x, y: [A.ReduceSumOp(A.MulOp(A.ExpOp(x), y), [0, 1]).result],
                    [t, t]))
    (k,) = kernels(m)
    assert count(k, memref.StoreOp) == 1  # only the result
    assert host(m).attributes["pullback.temp_bytes"].get_values() == ()
    (loop,) = parallels(k)  # one flat loop reducing the sum
    assert count(k, scf.ForOp) == 0 and len(loop.lowerBound) == 1
    assert combiners(loop) == [arith.AddfOp] and inits(loop) == [0.0]


def test_broadcast_and_transpose_fuse() -> None:
    def make(x: SSAValue, b: SSAValue) -> list[SSAValue]:
        xt = A.TransposeOp(x, [1, 0]).result
        return [A.TanhOp(A.AddOp(xt, A.BroadcastOp(b, (4, 3)))).result]

    m = lower(build(make, [TensorType(f64, (3, 4)), TensorType(f64, (3,))]))
    assert len(kernels(m)) == 1


def test_costly_value_with_two_uses_is_computed_once_in_one_kernel() -> None:
    t = TensorType(f64, (64,))

    def make(x: SSAValue) -> list[SSAValue]:
        e = A.ExpOp(A.SinOp(x)).result
        return [A.ReduceSumOp(e, [0]).result, A.ReduceMaxOp(e, [0]).result]

    m = lower(build(make, [t]))
    (k,) = kernels(m)  # both reductions accumulate in one loop
    assert host(m).attributes["pullback.temp_bytes"].get_values() == ()
    assert count(k, math.ExpOp) == 1
    (loop,) = parallels(k)
    assert combiners(loop) == [arith.AddfOp, arith.MaximumfOp]
    assert inits(loop) == [0.0, -np.inf]  # the identities of + and max


def test_broadcast_of_costly_value_is_stored() -> None:
    def make(x: SSAValue, b: SSAValue) -> list[SSAValue]:
        e = A.BroadcastOp(A.ExpOp(A.SinOp(b)), (64, 32)).result
        return [A.MulOp(x, e).result]

    m = lower(build(make, [TensorType(f64, (64, 32)), TensorType(f64, (32,))]))
    assert len(kernels(m)) == 2
    assert host(m).attributes["pullback.temp_bytes"].get_values() == (32 * 8,)
    assert sum(count(k, math.ExpOp) for k in kernels(m)) == 1


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


# -- multi-output fusion ----------------------------------------------------------


def differentiate(make: Callable[..., Sequence[SSAValue]], arg_types: Sequence[Attribute],
                  wrt: tuple[int, ...] = ()) -> ModuleOp:
    """A module with `@f_vjp` of a scalar function, seeded and simplified."""
    module = build(make, arg_types)
    AutodiffPass(func="f", wrt=wrt, seed=True).apply(make_context(), module)
    SimplifyPass().apply(make_context(), module)
    return module


def schedule(module: ModuleOp, name: str) -> list[str]:
    """The host's calls, kernels as 'k' and matrix products as 'mm'."""
    calls = [o.callee.string_value() for o in host(module, name).walk()
             if isinstance(o, func.CallOp)]
    return ["mm" if c.startswith("pullback_matmul") else "k" for c in calls]


def _chain(x: SSAValue) -> list[SSAValue]:
    """sum(tanh(b - x) * x / (b + 1)) with b = (1.5 x + 0.25)^2 (benchmarks' chain)."""
    t = x.type
    assert isinstance(t, TensorType)

    def full(v: float) -> SSAValue:
        return A.FullOp(v, t).result

    a = A.AddOp(A.MulOp(full(1.5), x), full(0.25)).result
    b = A.MulOp(a, a).result
    y = A.DivOp(A.MulOp(A.TanhOp(A.SubOp(b, x)), x), A.AddOp(b, full(1.0))).result
    return [A.ReduceSumOp(y, [0]).result]


def test_chain_gradient_is_one_kernel_with_no_temporaries() -> None:
    n = 1000
    m = lower(differentiate(_chain, [TensorType(f64, (n,))]), "f_vjp")
    (k,) = kernels(m)
    assert host(m, "f_vjp").attributes["pullback.temp_bytes"].get_values() == ()
    assert count(k, math.TanhOp) == 1
    (loop,) = parallels(k)
    assert combiners(loop) == [arith.AddfOp] and count(k, scf.ForOp) == 0
    assert count(k, memref.StoreOp) == 2  # the gradient in the loop, the value after it

    x = np.random.default_rng(2).uniform(-1, 1, n)
    value, grad = compile_function(differentiate(_chain, [TensorType(f64, (n,))]), "f_vjp").run([x])
    a = 1.5 * x + 0.25
    b = a * a
    d = np.tanh(b - x)
    q = 1.0 / (b + 1.0)
    np.testing.assert_allclose(value, np.sum(d * x * q), rtol=1e-12)
    db = (1 - d * d) * x * q - d * x * q * q
    np.testing.assert_allclose(grad, db * 2 * a * 1.5 + d * q - (1 - d * d) * x * q,
                               rtol=1e-10, atol=1e-12)


def test_multi_output_kernel_stores_only_results() -> None:
    t = TensorType(f64, (40, 30))

    def make(x: SSAValue, y: SSAValue) -> list[SSAValue]:
        e = A.ExpOp(x).result
        p = A.MulOp(e, y).result
        return [p, A.AddOp(e, p).result, A.ReduceSumOp(p, [0, 1]).result,
                A.ReduceMaxOp(e, [1]).result, A.ReduceSumOp(e, [0]).result]

    m = lower(build(make, [t, t]))
    (k,) = kernels(m)
    assert count(k, math.ExpOp) == 1
    assert host(m).attributes["pullback.temp_bytes"].get_values() == ()
    x, y = np.random.default_rng(3).normal(size=(2, 40, 30))
    p, q, s, mx, cs = compile_function(build(make, [t, t]), "f").run([x, y])
    e = np.exp(x)
    np.testing.assert_allclose(p, e * y, rtol=1e-13)
    np.testing.assert_allclose(q, e + e * y, rtol=1e-13)
    np.testing.assert_allclose(s, np.sum(e * y), rtol=1e-12)
    np.testing.assert_allclose(mx, e.max(1), rtol=1e-13)
    np.testing.assert_allclose(cs, e.sum(0), rtol=1e-12)


def test_reduction_result_is_not_read_by_its_own_kernel() -> None:
    t = TensorType(f64, (16, 10))

    def softmax(z: SSAValue) -> list[SSAValue]:
        def rows(v: SSAValue) -> SSAValue:
            return A.BroadcastOp(A.ReshapeOp(v, (16, 1)), (16, 10)).result

        e = A.ExpOp(A.SubOp(z, rows(A.ReduceMaxOp(z, [1]).result))).result
        return [A.DivOp(e, rows(A.ReduceSumOp(e, [1]).result)).result]

    m = lower(build(softmax, [t]))
    assert len(kernels(m)) == 3  # max; exp and its sum; the quotient
    z = np.random.default_rng(4).normal(size=(16, 10)) * 5
    (p,) = compile_function(build(softmax, [t]), "f").run([z])
    want = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(p, want / want.sum(1, keepdims=True), rtol=1e-13)


def test_reduction_of_reduction_is_one_pass() -> None:
    t = TensorType(f64, (30, 20))
    m = lower(build(lambda x: [A.ReduceSumOp(A.ReduceSumOp(x, [1]), [0]).result], [t]))
    (k,) = kernels(m)
    assert count(k, memref.LoadOp) == 1 and count(k, memref.StoreOp) == 1
    assert host(m).attributes["pullback.temp_bytes"].get_values() == ()

    def both(x: SSAValue) -> list[SSAValue]:
        rows = A.ReduceMaxOp(x, [1]).result
        return [rows, A.ReduceMaxOp(rows, [0]).result]

    m = lower(build(both, [t]))
    (k,) = kernels(m)  # the row maxima and their maximum in one sweep
    assert count(k, memref.LoadOp) == 1
    x = np.random.default_rng(5).normal(size=(30, 20))
    rows, top = compile_function(build(both, [t]), "f").run([x])
    np.testing.assert_array_equal(rows, x.max(1))
    assert top == x.max()


@pytest.mark.parametrize("axes", [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)])
def test_reductions_over_any_axes_fuse_with_stores(axes: tuple[int, ...]) -> None:
    t = TensorType(f64, (6, 5, 4))

    def make(x: SSAValue) -> list[SSAValue]:
        s = A.SinOp(x).result
        return [s, A.ReduceSumOp(s, list(axes)).result, A.ReduceMinOp(x, list(axes)).result,
                A.ReduceSumOp(s, [0, 1, 2]).result]

    m = lower(build(make, [t]))
    assert len(kernels(m)) == 1
    x = np.random.default_rng(6).normal(size=(6, 5, 4))
    s, total, low, everything = compile_function(build(make, [t]), "f").run([x])
    np.testing.assert_allclose(s, np.sin(x), rtol=1e-14)
    np.testing.assert_allclose(total, np.sin(x).sum(axes), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(low, x.min(axes))
    np.testing.assert_allclose(everything, np.sin(x).sum(), rtol=1e-12)


def test_loops_follow_the_contract() -> None:
    t = TensorType(f64, (8, 6))

    def make(x: SSAValue) -> list[SSAValue]:
        e = A.ExpOp(x).result
        return [e, A.ReduceSumOp(e, [0]).result, A.ReduceSumOp(e, [1]).result]

    m = lower(build(make, [t]))
    (k,) = kernels(m)
    assert k.attributes["pullback.kernel"] == StringAttr("fused")
    init, cols = parallels(k)
    (rows,) = [o for o in k.walk() if isinstance(o, scf.ForOp)]
    # The column sums start at zero (each element its own: parallel) and accumulate
    # over the rows (sequential, nothing carried); the row sums are a reduction of the
    # loop over the columns inside it.
    assert not init.initVals and not rows.iter_args
    assert cols.parent_op() is rows
    assert combiners(cols) == [arith.AddfOp] and inits(cols) == [0.0]

    m = lower(build(lambda x: [A.ExpOp(x).result, A.ReduceSumOp(x, [1]).result], [t]))
    (k,) = kernels(m)
    outer, inner = parallels(k)
    assert count(k, scf.ForOp) == 0 and not outer.initVals
    assert inner.parent_op() is outer and combiners(inner) == [arith.AddfOp]


def test_independent_loops_of_a_nest_are_one_parallel_op() -> None:
    # A transposed copy needs both indices: one 2-d scf.parallel over (3, 4).
    m = lower(build(lambda x: [A.TransposeOp(A.ExpOp(x), [1, 0]).result],
                    [TensorType(f64, (4, 3))]))
    (k,) = kernels(m)
    (loop,) = parallels(k)
    assert count(k, scf.ForOp) == 0 and not loop.initVals
    assert [v.owner.value.value.data for v in loop.upperBound] == [3, 4]


def test_mlp_gradient_has_few_kernels_between_matrix_products() -> None:
    batch, sizes = 8, (5, 4, 3)
    tx = TensorType(f64, (batch, sizes[0]))
    tw1, tb1 = TensorType(f64, sizes[:2]), TensorType(f64, sizes[1:2])
    tw2, tb2 = TensorType(f64, sizes[1:]), TensorType(f64, sizes[2:])

    def mlp(x: SSAValue, w1: SSAValue, b1: SSAValue, w2: SSAValue, b2: SSAValue
            ) -> list[SSAValue]:
        h = A.TanhOp(A.AddOp(A.MatmulOp(x, w1), A.BroadcastOp(b1, (batch, sizes[1])))).result
        z = A.AddOp(A.MatmulOp(h, w2), A.BroadcastOp(b2, (batch, sizes[2]))).result
        return [A.ReduceSumOp(A.MulOp(z, z), [0, 1]).result]

    types = [tx, tw1, tb1, tw2, tb2]
    m = lower(differentiate(mlp, types, wrt=(1, 2, 3, 4)), "f_vjp")
    plan = schedule(m, "f_vjp")
    assert plan.count("mm") == 5
    gaps = "".join(plan).split("mm")
    assert max(len(g) for g in gaps) <= 1, plan

    rng = np.random.default_rng(7)
    args = [rng.normal(size=tuple(t.get_shape())) for t in types]
    program = differentiate(mlp, types, wrt=(1, 2, 3, 4))
    value, *grads = compile_function(program, "f_vjp").run(args)
    x, w1, b1, w2, b2 = args
    h = np.tanh(x @ w1 + b1)
    z = h @ w2 + b2
    dz = 2 * z
    dh = (dz @ w2.T) * (1 - h * h)
    want = [x.T @ dh, dh.sum(0), h.T @ dz, dz.sum(0)]
    np.testing.assert_allclose(value, np.sum(z * z), rtol=1e-12)
    for got, ref in zip(grads, want, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


class _RandomProgram:
    """A random array program built at once as IR and as numpy values."""

    UNARY = ((A.SinOp, np.sin), (A.TanhOp, np.tanh), (A.NegOp, np.negative), (A.AbsOp, np.abs))
    BINARY = ((A.AddOp, np.add), (A.MulOp, np.multiply), (A.SubOp, np.subtract),
              (A.MaximumOp, np.maximum))
    REDUCE = ((A.ReduceSumOp, np.sum), (A.ReduceMaxOp, np.max), (A.ReduceMinOp, np.min))

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.shapes = [(3, 4), (3, 4), (4,), (3, 1), ()]
        self.args = [self.rng.normal(size=s) for s in self.shapes]
        self.steps = int(self.rng.integers(4, 14))

    def types(self) -> list[Attribute]:
        return [TensorType(f64, s) for s in self.shapes]

    def make(self, *inputs: SSAValue) -> list[SSAValue]:
        rng = np.random.default_rng(int(self.rng.integers(1 << 30)))
        pool: list[tuple[SSAValue, np.ndarray]] = list(zip(inputs, self.args, strict=True))
        for _ in range(self.steps):
            pool.append(self._step(rng, pool))
        picks = {len(pool) - 1, *(int(i) for i in rng.integers(0, len(pool), 3))}
        self.expected = [pool[i][1] for i in sorted(picks)]
        return [pool[i][0] for i in sorted(picks)]

    def _pick(self, rng: np.random.Generator, pool: list[tuple[SSAValue, np.ndarray]]
              ) -> tuple[SSAValue, np.ndarray]:
        return pool[int(rng.integers(len(pool)))]

    def _step(self, rng: np.random.Generator, pool: list[tuple[SSAValue, np.ndarray]]
              ) -> tuple[SSAValue, np.ndarray]:
        v, x = self._pick(rng, pool)
        kind = int(rng.integers(6))
        if kind == 0:
            op, fn = self.UNARY[int(rng.integers(len(self.UNARY)))]
            return op(v).result, fn(x)
        if kind == 1:
            w, y = self._pick(rng, pool)
            shape = A.broadcast_shapes(x.shape, y.shape)
            if shape is None:
                return v, x
            v, x = self._broadcast(v, x, shape)
            w, y = self._broadcast(w, y, shape)
            op, fn = self.BINARY[int(rng.integers(len(self.BINARY)))]
            return op(v, w).result, fn(x, y)
        if kind == 2 and x.ndim:
            axes = sorted({int(a) for a in rng.integers(0, x.ndim, x.ndim)})
            op, fn = self.REDUCE[int(rng.integers(len(self.REDUCE)))]
            return op(v, axes).result, fn(x, axis=tuple(axes))
        if kind == 3 and x.ndim == 2:
            return A.TransposeOp(v, [1, 0]).result, x.T
        if kind == 4:
            shape = (x.size,) if x.ndim != 1 else (1, x.size)
            return A.ReshapeOp(v, shape).result, x.reshape(shape)
        if kind == 5:
            w, y = self._pick(rng, [p for p in pool if p[1].shape == x.shape])
            mask = A.CompareOp("lt", v, w).result
            return A.SelectOp(mask, w, v).result, np.where(x < y, y, x)
        return self._broadcast(v, x, (2, *x.shape))

    @staticmethod
    def _broadcast(v: SSAValue, x: np.ndarray, shape: tuple[int, ...]
                   ) -> tuple[SSAValue, np.ndarray]:
        if x.shape == shape:
            return v, x
        return A.BroadcastOp(v, shape).result, np.broadcast_to(x, shape)


@pytest.mark.parametrize("seed", range(24))
def test_random_fused_programs_match_numpy(seed: int) -> None:
    program = _RandomProgram(seed)
    module = build(program.make, program.types())
    outs = compile_function(module, "f").run(program.args)
    for got, want in zip(outs, program.expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_fused_expression_thousands_of_ops_deep() -> None:
    t = TensorType(f64, (8,))
    depth = 3000  # one fused expression; emitting it must not recurse per op

    def make(x: SSAValue, y: SSAValue) -> list[SSAValue]:
        v = x
        for i in range(depth):
            v = (A.AddOp if i % 2 else A.MulOp)(v, y).result
        return [v]

    x, y = np.random.default_rng(5).uniform(0.5, 1.0, size=(2, 8))
    (out,) = compile_function(build(make, [t, t]), "f").run([x, y])
    want = x.copy()
    for i in range(depth):
        want = want + y if i % 2 else want * y
    np.testing.assert_allclose(out, want, rtol=1e-12)
