"""The `autodiff` and `jvp` passes on whole functions: signatures and attributes,
absent gradients, composition into second order, pipelines and errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType, f64, i64
from xdsl.ir import Attribute, Block, Region, SSAValue
from xdsl.irdl import IRDLOperation, irdl_op_definition, operand_def, result_def
from xdsl.parser import Parser

from pullback.compiler.autodiff.emit import Emitter
from pullback.compiler.autodiff.forward import JvpPass
from pullback.compiler.autodiff.reverse import AutodiffPass
from pullback.compiler.context import make_context
from pullback.compiler.dialects import array as A
from pullback.compiler.interpreter import evaluate_module, find_function
from pullback.compiler.passes import parse_pipeline

V3 = TensorType(f64, [3])
S = TensorType(f64, [])


def make_module(name: str, arg_types: Sequence[Attribute],
                body: Callable[[Emitter, Sequence[SSAValue]], Sequence[SSAValue]]) -> ModuleOp:
    """A module with one function whose body `body` emits."""
    block = Block(arg_types=arg_types)
    results = list(body(Emitter(block), block.args))
    block.add_op(func.ReturnOp(*results))
    f = func.FuncOp(name, (list(arg_types), [r.type for r in results]), Region(block))
    return ModuleOp([f])


def ints(f: func.FuncOp, key: str) -> list[int]:
    return [int(v) for v in f.attributes[key].get_values()]  # type: ignore[attr-defined]


def _gated(e: Emitter, a: Sequence[SSAValue]) -> list[SSAValue]:
    """f(x, y, z, k, w) = select(y < z, 2x, x) + float(int(z)) + float(k); w unused."""
    x, y, z, k, _ = a
    picked = e.select(e.compare("lt", y, z), e.scale(x, 2.0), x)
    via_int = e.convert(e.convert(z, i64), f64)
    total = e.add(e.add(picked, via_int), e.convert(k, f64))
    return [total, e.compare("gt", x, y)]


def test_absent_gradients_and_attributes() -> None:
    module = make_module("f", [V3, V3, V3, TensorType(i64, [3]), V3], _gated)
    AutodiffPass().apply(make_context(), module)
    module.verify()
    vjp = find_function(module, "f_vjp")
    assert vjp.attributes["pullback.derivative"] == StringAttr("vjp")
    assert ints(vjp, "pullback.wrt") == [0]
    assert ints(vjp, "pullback.cotangents") == [0]
    ins = vjp.function_type.inputs.data
    outs = vjp.function_type.outputs.data
    assert list(ins) == [V3, V3, V3, TensorType(i64, [3]), V3, V3]
    assert list(outs) == [V3, TensorType(A.i1, [3]), V3]
    x, y, z = np.array([1.0, 2.0, 3.0]), np.array([0.0, 5.0, 1.0]), np.array([1.0, 1.0, 2.0])
    args = [x, y, z, np.array([1, 2, 3]), np.zeros(3)]
    res = evaluate_module(module, "f_vjp", [*args, np.array([1.0, 10.0, 100.0])])
    np.testing.assert_array_equal(res[2], [2.0, 10.0, 200.0])
    assert find_function(module, "f").attributes.get("pullback.derivative") is None


def test_jvp_signature_attributes_and_zero_tangents() -> None:
    module = make_module("f", [V3, TensorType(i64, [3]), V3],
                         lambda e, a: [e.unary(A.SinOp, a[0]), e.full(2.0, V3),
                                       e.convert(a[1], f64)])
    JvpPass().apply(make_context(), module)
    module.verify()
    jvp = find_function(module, "f_jvp")
    assert jvp.attributes["pullback.derivative"] == StringAttr("jvp")
    assert ints(jvp, "pullback.tangents") == [0, 2]
    x = np.array([0.1, 0.2, 0.3])
    res = evaluate_module(module, "f_jvp", [x, np.array([1, 2, 3]), x, np.ones(3), np.ones(3)])
    assert len(res) == 6
    np.testing.assert_allclose(res[3], np.cos(x))
    np.testing.assert_array_equal(res[4], np.zeros(3))
    np.testing.assert_array_equal(res[5], np.zeros(3))


def test_result_that_is_an_argument_and_repeated_results() -> None:
    module = make_module("f", [V3], lambda e, a: [a[0], e.mul(a[0], a[0]), a[0]])
    AutodiffPass().apply(make_context(), module)
    module.verify()
    x = np.array([1.0, -2.0, 0.5])
    res = evaluate_module(module, "f_vjp", [x, np.ones(3), np.full(3, 2.0), np.full(3, 3.0)])
    np.testing.assert_allclose(res[3], 1.0 + 2.0 * 2 * x + 3.0)


def _cubic(e: Emitter, a: Sequence[SSAValue]) -> list[SSAValue]:
    x = a[0]
    return [e.reduce_sum(e.mul(e.mul(x, x), x), [0])]


def test_hessian_vector_products_by_composition() -> None:
    """f = sum(x^3): gradient 3x^2, Hessian diag(6x)."""
    module = make_module("f", [V3], _cubic)
    parse_pipeline("autodiff{func=f},jvp{func=f_vjp},autodiff{func=f_vjp}").apply(
        make_context(), module)
    module.verify()
    x, v, one = np.array([1.0, -2.0, 0.5]), np.array([0.3, 1.0, -1.0]), np.array(1.0)
    y, g, _, g_dot = evaluate_module(module, "f_vjp_jvp", [x, one, v, np.array(0.0)])
    np.testing.assert_allclose(g, 3 * x**2)
    np.testing.assert_allclose(g_dot, 6 * x * v)
    res = evaluate_module(module, "f_vjp_vjp", [x, one, np.array(0.0), v])
    assert ints(find_function(module, "f_vjp_vjp"), "pullback.wrt") == [0, 1]
    np.testing.assert_allclose(res[2], 6 * x * v)
    np.testing.assert_allclose(res[3], np.dot(3 * x**2, v))


def _logsumexp(e: Emitter, a: Sequence[SSAValue]) -> list[SSAValue]:
    """Row-wise log-sum-exp of a (2, 3) matrix plus a broadcast bias (3,)."""
    x, b = a
    z = e.add(x, e.broadcast(b, [2, 3]))
    m = e.reduce(A.ReduceMaxOp, z, [1])
    shifted = e.sub(z, e.broadcast(e.reshape(m, [2, 1]), [2, 3]))
    s = e.reduce_sum(e.unary(A.ExpOp, shifted), [1])
    return [e.add(e.unary(A.LogOp, s), m)]


def test_composite_function_first_and_second_order(rng, vjp_checker, jvp_checker) -> None:
    module = make_module("f", [TensorType(f64, [2, 3]), V3], _logsumexp)
    args = [rng.standard_normal((2, 3)), rng.standard_normal(3)]
    vjp_checker(module, "f", args, rng)
    jvp_checker(module, "f", args, rng)
    cts = [rng.standard_normal(2)]
    jvp_checker(module, "f_vjp", [*args, *cts], rng, rtol=1e-4, atol=1e-5)
    vjp_checker(module, "f_vjp", [*args, *cts], rng, rtol=1e-4, atol=1e-5)


def test_default_skips_derivatives_and_named_function_errors() -> None:
    module = make_module("f", [V3], _cubic)
    ctx = make_context()
    AutodiffPass().apply(ctx, module)
    JvpPass().apply(ctx, module)
    names = [op.sym_name.data for op in module.ops]
    assert names == ["f", "f_jvp", "f_vjp"]
    with pytest.raises(ValueError, match="already has a function"):
        AutodiffPass(func="f").apply(ctx, module)
    with pytest.raises(ValueError, match="no function @g"):
        JvpPass(func="g").apply(ctx, module)


@irdl_op_definition
class OpaqueOp(IRDLOperation):
    name = "test.opaque"
    operand = operand_def()
    result = result_def()


def test_missing_rule_names_op_and_mode() -> None:
    module = make_module("f", [V3], lambda e, a: [e.emit(OpaqueOp.create(
        operands=[a[0]], result_types=[V3]))])
    with pytest.raises(NotImplementedError,
                       match=r"no VJP rule for 'test.opaque' \(reverse mode\)"):
        AutodiffPass().apply(make_context(), module)
    module = make_module("f", [V3], lambda e, a: [e.emit(OpaqueOp.create(
        operands=[a[0]], result_types=[V3]))])
    with pytest.raises(NotImplementedError,
                       match=r"no JVP rule for 'test.opaque' \(forward mode\)"):
        JvpPass().apply(make_context(), module)


def test_inactive_ops_need_no_rule() -> None:
    module = make_module("f", [V3, V3], lambda e, a: [e.add(a[0], e.emit(OpaqueOp.create(
        operands=[e.convert(e.convert(a[1], i64), f64)], result_types=[V3])))])
    AutodiffPass().apply(make_context(), module)
    JvpPass().apply(make_context(), module)
    assert ints(find_function(module, "f_vjp"), "pullback.wrt") == [0]


def test_printed_derivative_parses_back() -> None:
    module = make_module("f", [TensorType(f64, [2, 3]), V3], _logsumexp)
    parse_pipeline("autodiff,jvp{func=f_vjp}").apply(make_context(), module)
    parsed = Parser(make_context(), str(module)).parse_module()
    assert parsed.is_structurally_equivalent(module)
