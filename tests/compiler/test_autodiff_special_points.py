"""Derivatives at points where the rules need care: zeros in products, pow at a
zero base, ties of maximum/minimum, abs at 0. Expected values are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from op_table import ROWS, Case, one_op_module
from xdsl.dialects.builtin import f32, f64

from pullback.compiler.autodiff.forward import JvpPass
from pullback.compiler.autodiff.reverse import AutodiffPass
from pullback.compiler.context import make_context
from pullback.compiler.interpreter import evaluate_module

DTYPES = [(np.float64, f64), (np.float32, f32)]


def _grads(row: str, case: Case, args: list, ft=f64) -> list[np.ndarray | None]:
    """Gradients of sum(f(args)) (None where absent), one per argument."""
    module = one_op_module(ROWS[row], case, ft)
    AutodiffPass().apply(make_context(), module)
    module.verify()
    out = evaluate_module(module, "f", args)[0]
    res = evaluate_module(module, "f_vjp", [*args, np.ones_like(out)])
    wrt = [int(v) for v in module.ops.last.attributes["pullback.wrt"].get_values()]
    by_arg = dict(zip(wrt, res[1:], strict=True))
    return [by_arg.get(i) for i in range(len(args))]


def _tangent(row: str, case: Case, args: list, tangents: list, ft=f64) -> np.ndarray:
    module = one_op_module(ROWS[row], case, ft)
    JvpPass().apply(make_context(), module)
    module.verify()
    return evaluate_module(module, "f_jvp", [*args, *tangents])[1]


@pytest.mark.parametrize(("dtype", "ft"), DTYPES)
@pytest.mark.parametrize(("x", "want"), [
    ([2.0, 3.0, 4.0], [12.0, 8.0, 6.0]),
    ([2.0, 0.0, 3.0, 4.0], [0.0, 24.0, 0.0, 0.0]),
    ([0.0, 2.0, 0.0], [0.0, 0.0, 0.0]),
    ([0.0], [1.0]),
    ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
])
def test_prod_with_zeros(x, want, dtype, ft) -> None:
    x = np.array(x, dtype)
    case = Case((x.shape,), {"axes": [0]})
    (grad,) = _grads("reduce_prod", case, [x], ft)
    np.testing.assert_allclose(grad, want, rtol=1e-6)
    t = np.arange(1, x.size + 1, dtype=dtype)
    np.testing.assert_allclose(_tangent("reduce_prod", case, [x], [t], ft), np.dot(t, want),
                               rtol=1e-6)


def test_prod_with_zeros_per_row() -> None:
    x = np.array([[1.0, 0.0, 5.0], [2.0, 3.0, 4.0], [0.0, 0.0, 1.0]])
    (grad,) = _grads("reduce_prod", Case((x.shape,), {"axes": [1]}), [x])
    np.testing.assert_allclose(grad, [[0.0, 5.0, 0.0], [12.0, 8.0, 6.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize(("dtype", "ft"), DTYPES)
@pytest.mark.parametrize(("y", "dx"), [(2.0, 0.0), (1.0, 1.0), (3.0, 0.0), (0.0, 0.0),
                                       (2.5, 0.0)])
def test_pow_at_zero_base(y, dx, dtype, ft) -> None:
    x, e = np.zeros(2, dtype), np.full(2, y, dtype)
    gx, gy = _grads("pow", Case(((2,), (2,))), [x, e], ft)
    np.testing.assert_array_equal(gx, [dx, dx])
    np.testing.assert_array_equal(gy, [0.0, 0.0])  # 0**y is constant in y > 0
    t = _tangent("pow", Case(((2,), (2,))), [x, e], [np.ones(2, dtype), np.ones(2, dtype)], ft)
    np.testing.assert_array_equal(t, [dx, dx])


def test_pow_away_from_zero() -> None:
    x, y = np.array([2.0, 0.5]), np.array([3.0, -1.0])
    gx, gy = _grads("pow", Case(((2,), (2,))), [x, y])
    np.testing.assert_allclose(gx, y * x ** (y - 1))
    np.testing.assert_allclose(gy, x**y * np.log(x))


@pytest.mark.parametrize("row", ["maximum", "minimum"])
def test_binary_extremum_ties_split(row) -> None:
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, -1.0])
    gx, gy = _grads(row, Case(((3,), (3,))), [x, y])
    first = [0.5, 0.0, 1.0] if row == "maximum" else [0.5, 1.0, 0.0]
    np.testing.assert_array_equal(gx, first)
    np.testing.assert_array_equal(gy, 1 - np.array(first))
    t = _tangent(row, Case(((3,), (3,))), [x, y], [np.ones(3), np.full(3, 3.0)])
    np.testing.assert_array_equal(t, np.array(first) + 3 * (1 - np.array(first)))


@pytest.mark.parametrize(("row", "x", "want"), [
    ("reduce_max", [1.0, 3.0, 3.0, 2.0], [0.0, 0.5, 0.5, 0.0]),
    ("reduce_min", [1.0, 3.0, 1.0, 1.0], [1 / 3, 0.0, 1 / 3, 1 / 3]),
    ("reduce_max", [4.0, 3.0], [1.0, 0.0]),
])
def test_reduction_extremum_ties_split(row, x, want) -> None:
    x = np.array(x)
    (grad,) = _grads(row, Case((x.shape,), {"axes": [0]}), [x])
    np.testing.assert_allclose(grad, want)


def test_abs_at_zero_and_sign() -> None:
    x = np.array([-2.0, 0.0, 3.0])
    (grad,) = _grads("abs", Case(((3,),)), [x])
    np.testing.assert_array_equal(grad, [-1.0, 0.0, 1.0])
    assert _grads("sign", Case(((3,),)), [x]) == [None]
