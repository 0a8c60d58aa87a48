"""Ops defined outside pullback (`pullback.compiler.register_op`, `pb.custom_op`).

Two ops are registered here, in a dialect no other test uses: `softplus(x) = log(1 +
exp(x))`, whose derivative is the logistic sigmoid `s(x)` (second derivative
`s(x) (1 - s(x))`), and the binary `logaddexp(x, y) = log(exp(x) + exp(y))`, whose
partials are `exp(x - r)` and `exp(y - r)`. Derivatives are checked against these
formulas and against central finite differences (of the numpy reference for first
derivatives, of the compiled gradient for second ones).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opencl_platform import NO_OPENCL
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.irdl import irdl_op_definition, traits_def
from xdsl.parser import Parser
from xdsl.traits import Pure

import pullback as pb
from pullback.cli import main
from pullback.compiler import register_op
from pullback.compiler.autodiff.rules import JVP_RULES, VJP_RULES
from pullback.compiler.autodiff.rules.batch import BATCH_RULES
from pullback.compiler.context import make_context
from pullback.compiler.conversion.scalar_ops import SCALAR_RULES
from pullback.compiler.dialects.array import Array, BinaryOp, ExpOp, UnaryOp
from pullback.compiler.dialects.extension_ops import EXTENSION_OPS
from pullback.compiler.dialects.traits import Elementwise, Expensive, FloatOnly
from pullback.compiler.interpreter import IMPLS, evaluate_module
from pullback.program import trace_program

DIALECT = "test_custom_op"


@irdl_op_definition
class SoftplusOp(UnaryOp):
    name = f"{DIALECT}.softplus"
    traits = traits_def(Pure(), Elementwise(), FloatOnly(), Expensive())


@irdl_op_definition
class LogaddexpOp(BinaryOp):
    name = f"{DIALECT}.logaddexp"
    traits = traits_def(Pure(), Elementwise(), FloatOnly(), Expensive())


def _softplus_element(w: Any, op: Operation, args: list[Any]) -> Any:
    (x,) = args
    positive = w.add(arith.MaximumfOp(x, w.constant(0.0, x.type)))
    tail = w.add(math.Log1pOp(w.add(math.ExpOp(w.add(arith.NegfOp(w.add(math.AbsFOp(x))))))))
    return w.add(arith.AddfOp(positive, tail))


def _logaddexp_element(w: Any, op: Operation, args: list[Any]) -> Any:
    x, y = args
    top = w.add(arith.MaximumfOp(x, y))
    gap = w.add(math.AbsFOp(w.add(arith.SubfOp(x, y))))
    tail = w.add(math.Log1pOp(w.add(math.ExpOp(w.add(arith.NegfOp(gap))))))
    return w.add(arith.AddfOp(top, tail))


register_op(SoftplusOp, derivative=lambda e, op: e.unary(ExpOp, e.sub(op.operand, op.result)),
            interpret=lambda x: np.logaddexp(0.0, x), lower=_softplus_element)
register_op(LogaddexpOp,
            derivative=(lambda e, op: e.unary(ExpOp, e.sub(op.lhs, op.result)),
                        lambda e, op: e.unary(ExpOp, e.sub(op.rhs, op.result))),
            interpret=np.logaddexp, lower=_logaddexp_element)
softplus = pb.custom_op(SoftplusOp)
logaddexp = pb.custom_op(LogaddexpOp)

SHAPES = [(), (1,), (5,), (2, 3), (1, 4)]
DTYPES = [np.float64, np.float32]
EPS = 1e-6


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), as exp(-log(1 + exp(-x))): accurate in both tails."""
    return np.exp(-np.logaddexp(0.0, -x))


def _random(shape: tuple[int, ...], dtype: type, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-4.0, 4.0, shape).astype(dtype)


def _central(f: Callable[[np.ndarray], Any], x: np.ndarray) -> np.ndarray:
    """Central differences of `f` at float64 `x`: one row per element of `x`."""
    rows = []
    for i in range(x.size):
        step = np.zeros(x.size)
        step[i] = EPS
        up, down = x + step.reshape(x.shape), x - step.reshape(x.shape)
        rows.append((np.asarray(f(up), np.float64) - np.asarray(f(down), np.float64))
                    / (2 * EPS))
    return np.array(rows)


def _tolerance(dtype: type) -> float:
    return 1e-12 if dtype == np.float64 else 2e-6


# ----------------------------------------------------------------------------
# Values, gradients and Hessians
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_value_and_gradient(shape: tuple[int, ...], dtype: type) -> None:
    x = _random(shape, dtype, 1)
    w = _random(shape, dtype, 2)
    f = lambda v: pb.sum(softplus(v) * w)  # noqa: E731
    value, (g,) = pb.withgradient(f, x)
    assert np.asarray(g).dtype == dtype
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    np.testing.assert_allclose(value, np.sum(np.logaddexp(0.0, x64) * w64),
                               rtol=_tolerance(dtype))
    np.testing.assert_allclose(g, w64 * _sigmoid(x64), rtol=_tolerance(dtype), atol=1e-7)
    fd = _central(lambda v: np.sum(np.logaddexp(0.0, v) * w64), x64).reshape(shape)
    np.testing.assert_allclose(g, fd, rtol=1e-6 if dtype == np.float64 else 2e-5, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_hessian(shape: tuple[int, ...], dtype: type) -> None:
    x = _random(shape, dtype, 3)
    f = lambda v: pb.sum(softplus(v))  # noqa: E731
    h = np.asarray(pb.hessian(f, x))
    s = _sigmoid(x.astype(np.float64))
    want = np.diag((s * (1 - s)).ravel())
    np.testing.assert_allclose(h.reshape(want.shape), want, rtol=_tolerance(dtype), atol=1e-7)
    if dtype == np.float64:
        fd = _central(lambda v: pb.gradient(f, v)[0], x).reshape(want.shape)
        np.testing.assert_allclose(h.reshape(want.shape), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_broadcast_operands_of_a_binary_op(dtype: type) -> None:
    x, y = _random((3, 1), dtype, 4), _random((4,), dtype, 5)
    w = _random((3, 4), np.float64, 6)
    f = lambda a, b: pb.sum(logaddexp(a, b) * w)  # noqa: E731
    gx, gy = pb.gradient(f, x, y)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    r = np.logaddexp(x64, y64)
    np.testing.assert_allclose(gx, np.sum(w * np.exp(x64 - r), axis=1, keepdims=True),
                               rtol=_tolerance(dtype) * 10)
    np.testing.assert_allclose(gy, np.sum(w * np.exp(y64 - r), axis=0),
                               rtol=_tolerance(dtype) * 10)
    fd = _central(lambda v: np.sum(np.logaddexp(v, y64) * w), x64).reshape(x.shape)
    np.testing.assert_allclose(gx, fd, rtol=1e-6 if dtype == np.float64 else 2e-5, atol=1e-8)


def test_hessian_of_a_binary_op_against_finite_differences() -> None:
    xy = _random((2, 3), np.float64, 7)
    f = lambda v: pb.sum(logaddexp(v[0], v[1]) ** 2)  # noqa: E731
    h = np.asarray(pb.hessian(f, xy))
    fd = _central(lambda v: pb.gradient(f, v)[0], xy).reshape(h.shape)
    np.testing.assert_allclose(h, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(h, h.T, rtol=1e-13)


def test_extreme_inputs_stay_finite() -> None:
    """The stable forms: softplus(800) = 800, softplus(-800) = exp(-800) underflows to 0,
    and the derivative exp(x - softplus(x)) is 1 and 0 there, never nan."""
    x = np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    value, (g,) = pb.withgradient(lambda v: pb.sum(softplus(v) * np.arange(1.0, 6.0)), x)
    want = np.logaddexp(0.0, x)
    np.testing.assert_allclose(value, np.sum(want * np.arange(1.0, 6.0)), rtol=1e-15)
    np.testing.assert_allclose(g, np.arange(1.0, 6.0) * _sigmoid(x), rtol=1e-15, atol=1e-300)
    h = pb.hessian(lambda v: pb.sum(softplus(v)), x)
    s = _sigmoid(x)
    np.testing.assert_allclose(np.diag(h), s * (1 - s), rtol=1e-12, atol=1e-300)


def test_jacobian_batches_the_op() -> None:
    x = _random((4,), np.float64, 8)
    (jac,) = pb.jacobian(softplus, x)
    np.testing.assert_allclose(jac, np.diag(_sigmoid(x)), rtol=1e-14)


def test_integer_input_is_promoted_to_float() -> None:
    (g,) = pb.gradient(lambda v: pb.sum(softplus(v * 1.0)), np.array([0, 1, 2]))
    np.testing.assert_allclose(g, _sigmoid(np.array([0.0, 1.0, 2.0])), rtol=1e-14)
    out = pb.compile(lambda v: softplus(v), np.array([0, 1, 2]), mode="value")(
        np.array([0, 1, 2]))
    np.testing.assert_allclose(out, np.logaddexp(0.0, [0.0, 1.0, 2.0]), rtol=1e-15)


def test_untraced_call_runs_numpy() -> None:
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(softplus(x), np.logaddexp(0.0, x))
    np.testing.assert_array_equal(logaddexp(x, 1.0), np.logaddexp(x, 1.0))
    with pytest.raises(TypeError, match=r"logaddexp\(\) takes 2 array argument\(s\), got 1"):
        logaddexp(x)


@NO_OPENCL
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_opencl(dtype: type) -> None:
    x = _random((7,), dtype, 9)
    f = lambda v: pb.sum(softplus(v))  # noqa: E731
    (g,) = pb.gradient(f, x, device="opencl")
    h = pb.hessian(f, x, device="opencl")
    s = _sigmoid(x.astype(np.float64))
    np.testing.assert_allclose(g, s, rtol=_tolerance(dtype) * 10)
    np.testing.assert_allclose(h, np.diag(s * (1 - s)), rtol=_tolerance(dtype) * 10, atol=1e-7)
    c = pb.compile(f, x, device="opencl")
    assert "log1p" in c.opencl_source


# ----------------------------------------------------------------------------
# The op in the IR: interpreter, text, caches
# ----------------------------------------------------------------------------


def test_interpreter_runs_the_traced_module() -> None:
    x, y = _random((2, 3), np.float64, 10), _random((3,), np.float64, 11)
    program = trace_program(lambda a, b: logaddexp(softplus(a), b), (x, y))
    (out,) = evaluate_module(program.module, "f", [x, y])
    np.testing.assert_allclose(out, np.logaddexp(np.logaddexp(0.0, x), y), rtol=1e-15)


def test_ir_text_parses_back() -> None:
    x = _random((3,), np.float64, 12)
    text = pb.compile(lambda v: pb.sum(softplus(v)), x).ir("autodiff")
    assert f"{DIALECT}.softplus" in text
    module = Parser(make_context(), text).parse_module()
    assert isinstance(module, ModuleOp) and str(module) == text.strip()
    assert any(isinstance(op, SoftplusOp) for op in module.walk())


def test_pullback_opt_in_the_registering_process_differentiates_it(tmp_path: Path) -> None:
    """`pullback opt` (its `main`, called in this process) parses the traced text and runs
    `autodiff`; the interpreter runs the gradient it made: the sigmoid."""
    x = _random((4,), np.float64, 13)
    traced = trace_program(lambda v: pb.sum(softplus(v)), (x,)).module
    (tmp_path / "traced.mlir").write_text(str(traced))
    out = tmp_path / "vjp.mlir"
    assert main(["opt", str(tmp_path / "traced.mlir"), "-p", "autodiff", "-o", str(out)]) == 0
    module = Parser(make_context(), out.read_text()).parse_module()
    value, grad = evaluate_module(module, "f_vjp", [x, np.array(1.0)])  # cotangent 1
    np.testing.assert_allclose(value, np.sum(np.logaddexp(0.0, x)), rtol=1e-15)
    np.testing.assert_allclose(grad, _sigmoid(x), rtol=1e-15)


def test_programs_with_the_op_are_not_kept_on_disk(disk_cache_dir: Path) -> None:
    """Its rules' code is not part of the disk key, so a later process registering
    another op of this name must not load this program."""
    x = np.linspace(-1.0, 1.0, 17)
    before = pb.cache_info()
    (g,) = pb.gradient(lambda v: pb.sum(softplus(v) * 1.625), x)
    after = pb.cache_info()
    np.testing.assert_allclose(g, 1.625 * _sigmoid(x), rtol=1e-14)
    disk = ("disk_hits", "disk_misses", "disk_writes")
    assert [getattr(after, k) for k in disk] == [getattr(before, k) for k in disk]


def test_registered_ops_stay_out_of_pullbacks_dialects() -> None:
    """The coverage test walks pullback's dialects; registered ops are checked at
    registration instead (the refusals below) and are not added to them."""
    assert SoftplusOp not in Array.operations and LogaddexpOp not in Array.operations
    assert EXTENSION_OPS[SoftplusOp.name].cls is SoftplusOp


# ----------------------------------------------------------------------------
# Refusals: incomplete or conflicting registrations change no table
# ----------------------------------------------------------------------------

_NAMES = itertools.count()


def _op_class(*traits: Any, base: type = UnaryOp, dialect: str = DIALECT) -> type[Operation]:
    """A fresh elementwise op class with a name no other registration uses."""
    op_name = f"{dialect}.refused{next(_NAMES)}"
    own_traits = traits or (Pure(), Elementwise(), FloatOnly())

    @irdl_op_definition
    class RefusedOp(base):  # type: ignore[misc, valid-type]
        name = op_name
        traits = traits_def(*own_traits)

    return RefusedOp


def _sigmoid_partial(e: Any, op: Operation) -> Any:
    return e.unary(ExpOp, e.sub(op.operands[0], op.results[0]))


COMPLETE = {"derivative": _sigmoid_partial, "interpret": lambda x: np.logaddexp(0.0, x),
            "lower": _softplus_element}


def _refused(cls: type[Operation], error: type[Exception], match: str, **parts: Any) -> None:
    with pytest.raises(error, match=match):
        register_op(cls, **parts)
    for table in (VJP_RULES, JVP_RULES, BATCH_RULES, IMPLS, SCALAR_RULES):
        assert cls not in table
    assert cls.name not in EXTENSION_OPS


@pytest.mark.parametrize(("drop", "match"), [
    ("derivative", r"lacks its derivative: derivative= .* or both vjp= and jvp="),
    ("interpret", r"lacks an interpreter implementation: interpret="),
    ("lower", r"lacks a lowering: lower="),
])
def test_refuses_a_missing_part(drop: str, match: str) -> None:
    parts = {k: v for k, v in COMPLETE.items() if k != drop}
    _refused(_op_class(), ValueError, match, **parts)


def test_names_every_missing_part_at_once() -> None:
    _refused(_op_class(), ValueError,
             r"lacks its derivative.*; an interpreter implementation.*; a lowering")


def test_refuses_a_vjp_without_a_jvp() -> None:
    vjp = lambda e, op, g, needs: (g,)  # noqa: E731
    parts = {k: v for k, v in COMPLETE.items() if k != "derivative"}
    _refused(_op_class(), ValueError, r"lacks a JVP rule: vjp= and jvp= go together",
             vjp=vjp, **parts)


def test_refuses_conflicting_parts() -> None:
    _refused(_op_class(), ValueError, r"either derivative= or vjp= and jvp=, not both",
             vjp=lambda *a: None, jvp=lambda *a: None, **COMPLETE)
    cls = _op_class(Pure(), Elementwise(math.ExpOp), FloatOnly())
    _refused(cls, ValueError, r"Elementwise trait names math.exp, which is its lowering",
             **COMPLETE)


def test_refuses_a_part_that_is_not_callable() -> None:
    _refused(_op_class(), TypeError, r"interpret= must be callable, got 'np.logaddexp'",
             **{**COMPLETE, "interpret": "np.logaddexp"})


def test_an_op_whose_trait_names_its_standard_scalar_op() -> None:
    """No lower= where the Elementwise trait names the one scalar op of an element."""
    cls = _op_class(Pure(), Elementwise(math.TanhOp), FloatOnly())
    one_minus_square = lambda e, op: e.sub(e.full(1.0, op.result),  # noqa: E731
                                           e.mul(op.result, op.result))
    register_op(cls, derivative=one_minus_square, interpret=np.tanh)
    tanh = pb.custom_op(cls)
    x = _random((2, 3), np.float64, 14)
    value, (g,) = pb.withgradient(lambda v: pb.sum(tanh(v)), x)
    np.testing.assert_allclose(value, np.sum(np.tanh(x)), rtol=1e-14)
    np.testing.assert_allclose(g, 1.0 / np.cosh(x) ** 2, rtol=1e-13)


def test_refuses_partials_of_the_wrong_number() -> None:
    _refused(_op_class(base=BinaryOp), ValueError,
             r"one partial derivative per operand \(2\), got 1", **COMPLETE)


def test_refuses_an_op_that_is_not_elementwise() -> None:
    _refused(_op_class(Pure()), TypeError, r"has no Elementwise trait", **COMPLETE)
    with pytest.raises(TypeError, match=r"op class made with @irdl_op_definition"):
        register_op(len, **COMPLETE)  # type: ignore[arg-type]


def test_refuses_names_in_pullbacks_or_standard_dialects() -> None:
    for dialect in ("array", "arith"):
        _refused(_op_class(dialect=dialect), ValueError,
                 rf"in the '{dialect}' dialect, which is pullback's or a standard one",
                 **COMPLETE)


def test_refuses_a_name_registered_before() -> None:
    @irdl_op_definition
    class AnotherSoftplusOp(UnaryOp):
        name = SoftplusOp.name
        traits = traits_def(Pure(), Elementwise(), FloatOnly())

    with pytest.raises(ValueError, match=r"'test_custom_op.softplus' is already registered "
                                         r"\(by SoftplusOp\); op names are unique"):
        register_op(AnotherSoftplusOp, **COMPLETE)
    assert EXTENSION_OPS[SoftplusOp.name].cls is SoftplusOp
    assert AnotherSoftplusOp not in VJP_RULES


def test_refuses_a_lowering_the_backends_cannot_compile() -> None:
    def erf_element(w: Any, op: Operation, args: list[Any]) -> Any:
        return w.add(math.ErfOp(args[0]))

    _refused(_op_class(), ValueError, r"no LLVM lowering row for math.erf",
             **{**COMPLETE, "lower": erf_element})


def test_refuses_a_lowering_of_the_wrong_type() -> None:
    def wrong(w: Any, op: Operation, args: list[Any]) -> Any:
        return w.add(arith.CmpfOp(args[0], args[0], "olt"))

    _refused(_op_class(), ValueError, r"must return the scalar result, of type f64",
             **{**COMPLETE, "lower": wrong})


def test_refuses_rules_that_fail_on_a_trial_program() -> None:
    def broken(e: Any, op: Operation) -> Any:
        raise RuntimeError("this partial is broken")

    _refused(_op_class(), ValueError,
             r"the VJP rule failed on a one-op program: RuntimeError: this partial is broken",
             **{**COMPLETE, "derivative": broken})

    def unregistered_partial(e: Any, op: Operation) -> Any:
        return e.emit(_op_class()(op.operands[0]))  # an op with no rules of its own

    _refused(_op_class(), ValueError, r"the JVP rule \(over the VJP, as a Hessian runs\) "
             r"failed on a one-op program: NotImplementedError: no JVP rule",
             **{**COMPLETE, "derivative": unregistered_partial})


def test_refuses_an_interpreter_of_the_wrong_shape() -> None:
    _refused(_op_class(), ValueError, r"interpret= must give an array of its operands' "
             r"shape \(2, 3\), gave shape \(\)", **{**COMPLETE, "interpret": np.sum})


def test_custom_op_refuses_an_unregistered_class() -> None:
    cls = _op_class()
    with pytest.raises(ValueError, match=r"\('test_custom_op.refused\d+'\) is not registered; "
                                         r"register it first with pullback.compiler.register_op"):
        pb.custom_op(cls)
