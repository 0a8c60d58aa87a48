"""compile_function / LLVMExecutable: whole programs, outputs, reuse, errors, IR stages."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from op_table import build
from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    TensorType,
    f32,
    f64,
    i1,
)
from xdsl.ir import Attribute, SSAValue

from pullback.compiler.backends.llvm import LLVMExecutable, compile_function
from pullback.compiler.dialects import array as A

RNG = np.random.default_rng(3)




def compile_(make: Callable[..., Sequence[SSAValue]], arg_types: Sequence[Attribute],
             **kw: bool) -> LLVMExecutable:
    return compile_function(build(make, arg_types), "f", **kw)


T = TensorType(f64, (3, 4))


def test_several_outputs_inputs_repeats_and_constants() -> None:
    const = DenseIntOrFPElementsAttr.from_list(TensorType(f64, (2,)), [1.5, -2.0])

    def make(x: SSAValue, y: SSAValue) -> list[SSAValue]:
        s = A.AddOp(x, y).result
        return [s, x, s, A.ConstantOp(const).result, y, x,
                A.FullOp(3.0, TensorType(f64, ())).result]

    ex = compile_(make, [T, T])
    x, y = RNG.normal(size=(2, 3, 4))
    outs = ex.run([x, y])
    want = [x + y, x, x + y, np.array([1.5, -2.0]), y, x, np.array(3.0)]
    assert len(outs) == len(want)
    for got, w in zip(outs, want, strict=True):
        assert got.shape == w.shape and got.dtype == np.float64
        np.testing.assert_array_equal(got, w)
    assert outs[0] is not outs[2] and not np.shares_memory(outs[1], x)


def test_reuse_gives_fresh_outputs() -> None:
    def make(x: SSAValue) -> list[SSAValue]:
        e = A.ExpOp(A.SinOp(x)).result  # two costly uses: a reused temporary
        return [A.ReduceSumOp(e, [1]).result, A.MulOp(e, e).result]

    ex = compile_(make, [T])
    x1, x2 = RNG.normal(size=(2, 3, 4))
    a1, b1 = ex.run([x1])
    a1_copy = a1.copy()
    a2, b2 = ex.run([x2])
    assert not np.shares_memory(a1, a2) and not np.shares_memory(b1, b2)
    np.testing.assert_array_equal(a1, a1_copy)
    np.testing.assert_allclose(a2, np.exp(np.sin(x2)).sum(1), rtol=1e-12)
    np.testing.assert_allclose(b2, np.exp(np.sin(x2)) ** 2, rtol=1e-12)


def test_output_dtypes_and_zero_d() -> None:
    t = TensorType(f32, ())
    ex = compile_(lambda x: [A.CompareOp("gt", x, x).result, A.NegOp(x).result], [t])
    mask, neg = ex.run([np.array(2.0, np.float32)])
    assert mask.dtype == np.bool_ and mask.shape == () and not mask
    assert neg.dtype == np.float32 and neg.shape == () and neg == -2.0
    assert ex.input_types == (t,)
    assert ex.output_types == (TensorType(i1, ()), t)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 4), np.float32), "float32"),
    (np.zeros((4, 3)), r"\(4, 3\)"),
    (np.zeros((4, 3)).T, "non-contiguous"),
    ([[0.0] * 4] * 3, "list"),
])
def test_bad_inputs_raise(bad: object, message: str) -> None:
    ex = compile_(lambda x: [A.NegOp(x).result], [T])
    with pytest.raises(ValueError, match=message):
        ex.run([bad])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="takes 1 arrays"):
        ex.run([])


def test_unknown_function_raises() -> None:
    with pytest.raises(KeyError, match="no function @g"):
        compile_function(build(lambda x: [x], [T]), "g")


def test_caller_module_is_not_changed_and_other_functions_ignored() -> None:
    m = build(lambda x: [A.ExpOp(x).result], [T])
    other = build(lambda x: [A.CumsumOp(x, 1).result], [T], "f_vjp").body.block.first_op
    assert other is not None
    m.body.block.add_op(other.clone())
    before = str(m)
    ex = compile_function(m, "f_vjp")
    assert str(m) == before
    x = RNG.normal(size=(3, 4))
    np.testing.assert_allclose(ex.run([x])[0], np.cumsum(x, 1), rtol=1e-12)


def test_stages_timings_and_llvm_ir() -> None:
    ex = compile_(lambda x, y: [A.AddOp(A.MulOp(x, y), x).result],
                  [TensorType(f64, (1000,))] * 2, keep_ir=True)
    passes = ["keep-functions", "inline-checkpoints", "drop-eager-updates", "drop-identities",
              "schedule-writes", "fuse", "bufferize", "convert-kernels-to-loops", "memory-plan",
              "expand-math", "host-call-status", "convert-parallel-to-for",
              "convert-loops-to-llvm"]
    assert list(ex.stages) == passes
    assert "kernel.fused" in ex.stages["fuse"] and "kernel.fused" in ex.stages["bufferize"]
    assert "kernel.fused" not in ex.stages["convert-kernels-to-loops"]
    assert '"scf.parallel"' in ex.stages["convert-kernels-to-loops"]
    assert "scf.parallel" not in ex.stages["convert-parallel-to-for"]
    assert "scf.for" in ex.stages["convert-parallel-to-for"]
    assert "llvm.func" in ex.stages["convert-loops-to-llvm"]
    assert set(ex.timings) == {*passes, "translate", "optimize", "jit"}
    assert "noalias" in ex.llvm_ir
    assert "x double>" in ex.llvm_ir  # the loop was vectorized
    plain = compile_(lambda x: [x], [T])
    assert plain.stages == {} and plain.llvm_ir


def test_reduction_loop_vectorizes() -> None:
    t = TensorType(f64, (4096,))
    ex = compile_(lambda x, y: [A.ReduceSumOp(A.MulOp(x, y), [0]).result], [t, t])
    assert "x double>" in ex.llvm_ir
    x, y = RNG.normal(size=(2, 4096))
    np.testing.assert_allclose(ex.run([x, y])[0], x @ y, rtol=1e-10)


def _mlp_loss_and_grads(x: SSAValue, t: SSAValue, *ws: SSAValue) -> list[SSAValue]:
    """A 3-layer tanh MLP, squared-error loss and its hand-written reverse pass."""
    acts = [x]
    pre = []
    for i in range(3):
        w, b = ws[2 * i], ws[2 * i + 1]
        z = A.MatmulOp(acts[-1], w).result
        z = A.AddOp(z, A.BroadcastOp(b, A.shape_of(z))).result
        pre.append(z)
        acts.append(A.TanhOp(z).result if i < 2 else z)
    diff = A.SubOp(acts[-1], t).result
    loss = A.ReduceSumOp(A.MulOp(diff, diff), [0, 1]).result
    grads: list[SSAValue] = []
    g = A.MulOp(diff, A.FullOp(2.0, diff.type).result).result
    for i in reversed(range(3)):
        if i < 2:
            one = A.FullOp(1.0, g.type).result
            th = acts[i + 1]
            g = A.MulOp(g, A.SubOp(one, A.MulOp(th, th)).result).result
        a = acts[i]
        gw = A.MatmulOp(A.TransposeOp(a, [1, 0]).result, g).result
        gb = A.ReduceSumOp(g, [0]).result
        grads = [gw, gb, *grads]
        if i:
            g = A.MatmulOp(g, A.TransposeOp(ws[2 * i], [1, 0]).result).result
    return [loss, *grads]


def test_mlp_gradient_program() -> None:
    sizes = [(16, 32), (32, 32), (32, 4)]
    ws = []
    types: list[Attribute] = [TensorType(f64, (8, 16)), TensorType(f64, (8, 4))]
    for n, k in sizes:
        ws += [RNG.normal(size=(n, k)) / np.sqrt(n), RNG.normal(size=(k,))]
        types += [TensorType(f64, (n, k)), TensorType(f64, (k,))]
    x, t = RNG.normal(size=(8, 16)), RNG.normal(size=(8, 4))
    ex = compile_(_mlp_loss_and_grads, types)
    loss, *grads = ex.run([x, t, *ws])

    def numpy_loss(params: list[np.ndarray]) -> float:
        a = x
        for i in range(3):
            a = a @ params[2 * i] + params[2 * i + 1]
            a = np.tanh(a) if i < 2 else a
        return float(((a - t) ** 2).sum())

    np.testing.assert_allclose(loss, numpy_loss(ws), rtol=1e-12)
    eps = 1e-6
    for p, g in zip(ws, grads, strict=True):
        flat_p, flat_g = p.reshape(-1), g.reshape(-1)
        for j in (0, flat_p.size // 2, flat_p.size - 1):
            old = flat_p[j]
            flat_p[j] = old + eps
            up = numpy_loss(ws)
            flat_p[j] = old - eps
            down = numpy_loss(ws)
            flat_p[j] = old
            np.testing.assert_allclose(flat_g[j], (up - down) / (2 * eps), rtol=1e-5, atol=1e-7)


def test_more_buffers_than_a_foreign_call_can_pass() -> None:
    n = 1100  # ctypes passes at most 1024 arguments; the packed entry takes one

    def make(*xs: SSAValue) -> list[SSAValue]:
        total = xs[0]
        for x in xs[1:]:
            total = A.AddOp(total, x).result
        return [total]

    xs = list(RNG.normal(size=(n, 2)))
    (out,) = compile_(make, [TensorType(f64, (2,))] * n).run(xs)
    np.testing.assert_allclose(out, np.sum(xs, axis=0), rtol=1e-12)
