"""The `simplify` pass: each rewrite on a small function, and on AD output (fewer
ops, the same values)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from op_table import TABLE, Case, OpRow, one_op_module, sample_inputs
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f32, f64
from xdsl.ir import Block, Region, SSAValue

from pullback.compiler.autodiff.emit import Emitter
from pullback.compiler.context import make_context
from pullback.compiler.dialects import array as A
from pullback.compiler.interpreter import dtype_of, evaluate, evaluate_module
from pullback.compiler.passes import parse_pipeline

V = TensorType(f64, [2, 3])


def _module(types, body: Callable[[Emitter, Sequence[SSAValue]], Sequence[SSAValue]]):
    block = Block(arg_types=types)
    results = list(body(Emitter(block), block.args))
    block.add_op(func.ReturnOp(*results))
    return ModuleOp([func.FuncOp("f", (list(types), [r.type for r in results]),
                                 Region(block))])


def _simplified_ops(types, body) -> list[str]:
    module = _module(types, body)
    parse_pipeline("simplify,dce").apply(make_context(), module)
    module.verify()
    return [op.name for op in module.ops.first.body.block.ops]


@pytest.mark.parametrize(("body", "left"), [
    (lambda e, a: [e.neg(e.neg(a[0]))], []),
    (lambda e, a: [e.add(a[0], e.full(0.0, a[0]))], []),
    (lambda e, a: [e.sub(e.full(0.0, a[0]), a[0])], ["array.neg"]),
    (lambda e, a: [e.mul(e.full(1.0, a[0]), a[0])], []),
    (lambda e, a: [e.div(a[0], e.full(1.0, a[0]))], []),
    (lambda e, a: [e.mul(a[0], e.zeros(a[0]))], ["array.full"]),
    (lambda e, a: [e.mul(a[0], e.full(0.0, a[0]))], ["array.full", "array.mul"]),
    (lambda e, a: [e.reshape(e.reshape(a[0], [6]), [3, 2])], ["array.reshape"]),
    (lambda e, a: [e.reshape(e.reshape(a[0], [6]), [2, 3])], []),
    (lambda e, a: [e.transpose(e.transpose(a[0], [1, 0]), [1, 0])], []),
    (lambda e, a: [e.broadcast(e.full(2.0, TensorType(f64, [3])), [2, 3])], ["array.full"]),
    (lambda e, a: [e.reduce_sum(e.zeros(a[0]), [0])], ["array.full"]),
    (lambda e, a: [e.convert(e.convert(e.convert(a[0], f32), f64), f32)], ["array.convert"]),
    (lambda e, a: [e.convert(e.convert(a[0], f32), f64)], ["array.convert", "array.convert"]),
    (lambda e, a: [e.select(e.compare("lt", a[0], a[0]), a[0], a[0])], []),
    (lambda e, a: [e.neg(e.zeros(a[0]))], ["array.full"]),
    (lambda e, a: [e.transpose(e.reshape(e.broadcast(e.reshape(
        e.reduce_sum(a[0], [0, 1]), [1]), [6]), [3, 2]), [1, 0])],
     ["array.reduce_sum", "array.broadcast"]),
])
def test_rewrites(body, left) -> None:
    assert _simplified_ops([V], body) == [*left, "func.return"]


def test_user_zero_times_inf_keeps_nan() -> None:
    module = _module([V], lambda e, a: [e.mul(a[0], e.full(0.0, a[0]))])
    parse_pipeline("simplify,canonicalize,cse,dce").apply(make_context(), module)
    (out,) = evaluate(module.ops.first, [np.full((2, 3), np.inf)])
    assert np.isnan(out).all()


CASES = [(row, case) for row in TABLE for case in row.cases if row.smooth]
IDS = [f"{row.name}-{case.id}" for row, case in CASES]


def _count(module: ModuleOp) -> int:
    return sum(1 for _ in module.walk())


def _inputs(module: ModuleOp, args: list[np.ndarray],
            rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """For every function: the primal `args`, then random values for its other inputs."""
    calls = {}
    for f in module.ops:
        assert isinstance(f, func.FuncOp)
        extra = f.function_type.inputs.data[len(args):]
        calls[f.sym_name.data] = [
            *args, *(rng.standard_normal(t.get_shape()).astype(dtype_of(t)) for t in extra)
        ]
    return calls


def _check_shrinks(module: ModuleOp, args: list[np.ndarray]) -> tuple[int, int]:
    """Run simplify (+ canonicalize, cse, dce); values must not change. Op counts."""
    parse_pipeline("autodiff,jvp,jvp{func=f_vjp}").apply(make_context(), module)
    calls = _inputs(module, args, np.random.default_rng(3))
    before = {name: evaluate_module(module, name, a) for name, a in calls.items()}
    n = _count(module)
    parse_pipeline("simplify,canonicalize,cse,dce").apply(make_context(), module)
    module.verify()
    for name, want in before.items():
        got = evaluate_module(module, name, calls[name])
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-300, err_msg=name)
    return n, _count(module)


@pytest.mark.parametrize(("row", "case"), CASES, ids=IDS)
def test_ad_output_keeps_values(row: OpRow, case: Case) -> None:
    args = sample_inputs(row, case, np.random.default_rng(2))
    before, after = _check_shrinks(one_op_module(row, case), args)
    assert after <= before


def test_ad_output_shrinks() -> None:
    def body(e: Emitter, a: Sequence[SSAValue]) -> list[SSAValue]:
        x, b = a
        z = e.mul(e.unary(A.TanhOp, e.add(x, e.broadcast(b, [2, 3]))), x)
        return [e.reduce_sum(e.reshape(e.transpose(z, [1, 0]), [6]), [0])]

    module = _module([V, TensorType(f64, [3])], body)
    rng = np.random.default_rng(4)
    before, after = _check_shrinks(module, [rng.standard_normal((2, 3)),
                                            rng.standard_normal(3)])
    assert after < 0.9 * before, (before, after)
