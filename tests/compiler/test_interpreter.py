"""The reference interpreter against numpy, op by op, with exact dtypes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from op_table import TABLE, Case, OpRow, one_op_module, sample_inputs
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f32, f64
from xdsl.ir import Block, Region

from pullback.compiler.dialects import array as A
from pullback.compiler.interpreter import IMPLS, evaluate, evaluate_module


def _slice(x, start, stride, shape):
    idx = tuple(s + st * np.arange(n) for s, st, n in zip(start, stride, shape, strict=True))
    return x[np.ix_(*idx)] if idx else x


def _update(b, v, start, stride):
    out = b.copy()
    idx = tuple(s + st * np.arange(n) for s, st, n in zip(start, stride, v.shape, strict=True))
    if idx:
        out[np.ix_(*idx)] = v
    else:
        out = v.copy()
    return out


def _scatter(b, idx, u, axis):
    out = b.copy()
    moved = np.moveaxis(out, axis, 0)
    u = np.moveaxis(u.reshape(b.shape[:axis] + (idx.size,) + b.shape[axis + 1:]), axis, 0)
    for k, i in enumerate(idx.reshape(-1)):
        moved[i] += u[k]
    return out


def _cumsum(x, axis, reverse):
    if x.ndim == 0:
        return x
    forward = np.cumsum(x, axis=axis)
    return np.sum(x, axis=axis, keepdims=True) - forward + x if reverse else forward


NUMPY: dict[str, Any] = {
    "constant": lambda a, shape, values: np.array(values).reshape(shape),
    "full": lambda a, shape: np.full(shape, 1.5),
    "neg": lambda a: -a[0], "abs": lambda a: np.abs(a[0]), "sign": lambda a: np.sign(a[0]),
    "exp": lambda a: np.exp(a[0]), "log": lambda a: np.log(a[0]),
    "log1p": lambda a: np.log1p(a[0]), "expm1": lambda a: np.expm1(a[0]),
    "sqrt": lambda a: np.sqrt(a[0]), "sin": lambda a: np.sin(a[0]),
    "cos": lambda a: np.cos(a[0]), "tan": lambda a: np.tan(a[0]),
    "tanh": lambda a: np.tanh(a[0]), "sinh": lambda a: np.sinh(a[0]),
    "cosh": lambda a: np.cosh(a[0]), "arcsin": lambda a: np.arcsin(a[0]),
    "arccos": lambda a: np.arccos(a[0]), "arctan": lambda a: np.arctan(a[0]),
    "add": lambda a: a[0] + a[1], "sub": lambda a: a[0] - a[1], "mul": lambda a: a[0] * a[1],
    "div": lambda a: a[0] / a[1], "pow": lambda a: a[0] ** a[1],
    "maximum": lambda a: np.maximum(*a), "minimum": lambda a: np.minimum(*a),
    "arctan2": lambda a: np.arctan2(*a),
    "compare": lambda a, predicate: {"lt": a[0] < a[1], "le": a[0] <= a[1],
                                     "gt": a[0] > a[1], "ge": a[0] >= a[1],
                                     "eq": a[0] == a[1], "ne": a[0] != a[1]}[predicate],
    "select": lambda a: np.where(*a),
    "convert_float": lambda a: a[0].astype(np.float32 if a[0].dtype == np.float64
                                           else np.float64),
    "convert_to_int": lambda a: a[0].astype(np.int64),
    "convert_from_int": lambda a: a[0].astype(np.float64),
    "convert_from_mask": lambda a: a[0].astype(np.float64),
    "broadcast": lambda a, shape: np.broadcast_to(a[0], shape),
    "reshape": lambda a, shape: a[0].reshape(shape),
    "transpose": lambda a, perm: np.transpose(a[0], perm),
    "reduce_sum": lambda a, axes: np.sum(a[0], axis=tuple(axes)),
    "reduce_prod": lambda a, axes: np.prod(a[0], axis=tuple(axes)),
    "reduce_max": lambda a, axes: np.max(a[0], axis=tuple(axes)),
    "reduce_min": lambda a, axes: np.min(a[0], axis=tuple(axes)),
    "cumsum": lambda a, axis, reverse: _cumsum(a[0], axis, reverse),
    "matmul": lambda a: a[0] @ a[1],
    "slice": lambda a, start, stride, shape: _slice(a[0], start, stride, shape),
    "update_slice": lambda a, start, stride: _update(a[0], a[1], start, stride),
    "take": lambda a, axis: np.take(a[0], a[1], axis=axis),
    "scatter_add": lambda a, axis: _scatter(a[0], a[1] % a[0].shape[axis], a[2], axis),
    "concatenate": lambda a, axis: np.concatenate(a, axis=axis),
}

CASES = [(row, case) for row in TABLE for case in row.cases]
IDS = [f"{row.name}-{case.id}" for row, case in CASES]


@pytest.mark.parametrize(("row", "case"), CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_numpy(row: OpRow, case: Case, dtype) -> None:
    rng = np.random.default_rng(1)
    ft = f32 if dtype == np.float32 else f64
    module = one_op_module(row, case, ft)
    args = sample_inputs(row, case, rng, dtype)
    (got,) = evaluate_module(module, "f", args)
    want = np.asarray(NUMPY[row.name](args, **case.params))
    if row.name in ("constant", "full", "convert_from_int", "convert_from_mask"):
        want = want.astype(dtype)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-15)


def test_numpy_table_covers_every_row() -> None:
    assert {row.name for row in TABLE} == set(NUMPY)
    array_ops = {op for op in IMPLS if op.name.startswith("array.")}
    assert array_ops == {row.op for row in TABLE}


def test_cumsum_reverse_and_negative_strides() -> None:
    x = np.arange(6.0).reshape(2, 3)
    block = Block(arg_types=[TensorType(f64, [2, 3])])
    ops = [A.CumsumOp(block.args[0], 1, reverse=True),
           A.SliceOp(block.args[0], [1, 2], [-1, -2], [2, 2])]
    block.add_ops(ops)
    block.add_op(func.ReturnOp(*(op.results[0] for op in ops)))
    f = func.FuncOp("g", ([block.args[0].type], [op.results[0].type for op in ops]),
                    Region(block))
    cum, sl = evaluate(f, [x])
    np.testing.assert_array_equal(cum, [[3.0, 3.0, 2.0], [12.0, 9.0, 5.0]])
    np.testing.assert_array_equal(sl, [[5.0, 3.0], [2.0, 0.0]])


def test_scatter_add_repeats_and_negative_take() -> None:
    block = Block(arg_types=[TensorType(f64, [3]), TensorType(A.i64, [4]),
                             TensorType(f64, [4])])
    b, idx, u = block.args
    ops = [A.ScatterAddOp(b, idx, u, 0), A.TakeOp(b, idx, 0)]
    block.add_ops(ops)
    block.add_op(func.ReturnOp(*(op.results[0] for op in ops)))
    f = func.FuncOp("g", ([a.type for a in block.args], [op.results[0].type for op in ops]),
                    Region(block))
    out, taken = evaluate(f, [np.array([1.0, 2.0, 3.0]), np.array([0, -1, 0, 2]),
                              np.array([10.0, 20.0, 30.0, 40.0])])
    np.testing.assert_array_equal(out, [41.0, 2.0, 63.0])
    np.testing.assert_array_equal(taken, [1.0, 3.0, 1.0, 3.0])


def test_bad_arguments_and_unknown_function() -> None:
    row = next(r for r in TABLE if r.name == "add")
    module: ModuleOp = one_op_module(row, Case(((2,), (2,))))
    with pytest.raises(ValueError, match="takes 2 arguments, got 1"):
        evaluate_module(module, "f", [np.zeros(2)])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        evaluate_module(module, "f", [np.zeros(3), np.zeros(2)])
    with pytest.raises(KeyError, match="no function @g"):
        evaluate_module(module, "g", [])
