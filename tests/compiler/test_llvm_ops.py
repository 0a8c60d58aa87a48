"""Every array op compiled through loops and LLVM, one op per function, against numpy."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from xdsl.builder import ImplicitBuilder
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    FunctionType,
    ModuleOp,
    TensorType,
    f32,
    f64,
    i1,
    i64,
)
from xdsl.ir import Attribute, SSAValue

from pullback.compiler.backends.llvm import compile_function
from pullback.compiler.dialects import array as A

DTYPES = {f64: np.float64, f32: np.float32, i64: np.int64, i1: np.bool_}
RNG = np.random.default_rng(0)


def run(make: Callable[..., Sequence[SSAValue]], arg_types: Sequence[Attribute],
        args: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Build `@f(args) = make(args)`, compile it and run it on `args`."""
    fn = func.FuncOp("f", (list(arg_types), []))
    with ImplicitBuilder(fn.body) as block_args:
        outs = list(make(*block_args))
        func.ReturnOp(*outs)
    fn.function_type = FunctionType.from_lists(list(arg_types), [o.type for o in outs])
    return compile_function(ModuleOp([fn]), "f").run(args)


def rand(shape: Sequence[int], el: Attribute, low: float = -2.0, high: float = 2.0) -> np.ndarray:
    if el == i64:
        return RNG.integers(-5, 6, size=shape).astype(np.int64)
    if el == i1:
        return np.asarray(RNG.random(shape) < 0.5)
    return RNG.uniform(low, high, size=shape).astype(DTYPES[el])


def tol(el: Attribute) -> dict[str, float]:
    return {"rtol": 2e-5, "atol": 1e-5} if el == f32 else {"rtol": 1e-12, "atol": 1e-12}


def check(got: np.ndarray, want: np.ndarray, el: Attribute) -> None:
    want = np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == np.dtype(DTYPES[el])
    if el in (i64, i1):
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want.astype(got.dtype), **tol(el))


SHAPES = [(), (1,), (5,), (3, 4), (2, 1, 3)]

UNARY = [
    (A.NegOp, np.negative, (-2, 2)), (A.AbsOp, np.abs, (-2, 2)), (A.SignOp, np.sign, (-2, 2)),
    (A.ExpOp, np.exp, (-2, 2)), (A.LogOp, np.log, (0.1, 3)), (A.Log1pOp, np.log1p, (-0.5, 2)),
    (A.Expm1Op, np.expm1, (-1, 1)), (A.SqrtOp, np.sqrt, (0, 3)), (A.SinOp, np.sin, (-3, 3)),
    (A.CosOp, np.cos, (-3, 3)), (A.TanOp, np.tan, (-1, 1)), (A.TanhOp, np.tanh, (-3, 3)),
    (A.SinhOp, np.sinh, (-2, 2)), (A.CoshOp, np.cosh, (-2, 2)),
    (A.ArcsinOp, np.arcsin, (-0.9, 0.9)), (A.ArccosOp, np.arccos, (-0.9, 0.9)),
    (A.ArctanOp, np.arctan, (-3, 3)),
]


@pytest.mark.parametrize("op, ref, domain", UNARY, ids=[u[0].name for u in UNARY])
@pytest.mark.parametrize("el", [f64, f32], ids=str)
def test_unary_float(op: type[A.UnaryOp], ref: Callable, domain: tuple[float, float],
                     el: Attribute) -> None:
    for shape in ((), (2, 1, 3), (7,)):
        x = rand(shape, el, *domain)
        (got,) = run(lambda a, op=op: [op(a).result], [TensorType(el, shape)], [x])
        check(got, ref(x), el)


@pytest.mark.parametrize("op, ref", [(A.NegOp, np.negative), (A.AbsOp, np.abs),
                                     (A.SignOp, np.sign)])
def test_unary_int(op: type[A.UnaryOp], ref: Callable) -> None:
    x = rand((3, 4), i64)
    (got,) = run(lambda a: [op(a).result], [TensorType(i64, (3, 4))], [x])
    check(got, ref(x), i64)


BINARY = [
    (A.AddOp, np.add, True), (A.SubOp, np.subtract, True), (A.MulOp, np.multiply, True),
    (A.DivOp, np.divide, False), (A.PowOp, np.power, False),
    (A.MaximumOp, np.maximum, True), (A.MinimumOp, np.minimum, True),
    (A.Arctan2Op, np.arctan2, False),
]


@pytest.mark.parametrize("op, ref, ints", BINARY, ids=[b[0].name for b in BINARY])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_binary(op: type[A.BinaryOp], ref: Callable, ints: bool, shape: tuple[int, ...]) -> None:
    for el in (f64, f32, i64) if ints else (f64, f32):
        low = 0.1 if op is A.PowOp else -2.0
        x, y = rand(shape, el, low), rand(shape, el, low)
        if op is A.DivOp:
            y = np.where(np.abs(y) < 0.1, 0.5, y).astype(y.dtype)
        t = TensorType(el, shape)
        (got,) = run(lambda a, b: [op(a, b).result], [t, t], [x, y])
        check(got, ref(x, y), el)


def test_maximum_propagates_nan() -> None:
    x = np.array([1.0, np.nan, 3.0])
    y = np.array([np.nan, 2.0, 1.0])
    t = TensorType(f64, (3,))
    got = run(lambda a, b: [A.MaximumOp(a, b).result, A.MinimumOp(a, b).result], [t, t], [x, y])
    np.testing.assert_array_equal(got[0], np.maximum(x, y))
    np.testing.assert_array_equal(got[1], np.minimum(x, y))


@pytest.mark.parametrize("pred", A.COMPARE_PREDICATES)
@pytest.mark.parametrize("el", [f64, f32, i64, i1], ids=str)
def test_compare(pred: str, el: Attribute) -> None:
    shape = (4, 5)
    x, y = rand(shape, el), rand(shape, el)
    if el != i1:
        y[0] = x[0]  # some equal elements
    if el == f64:
        x[1, 0] = np.nan
    t = TensorType(el, shape)
    (got,) = run(lambda a, b: [A.CompareOp(pred, a, b).result], [t, t], [x, y])
    ref = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
           "eq": np.equal, "ne": np.not_equal}[pred]
    check(got, ref(x, y), i1)


@pytest.mark.parametrize("el", [f64, f32, i64, i1], ids=str)
def test_select(el: Attribute) -> None:
    shape = (3, 4)
    c, x, y = rand(shape, i1), rand(shape, el), rand(shape, el)
    t = TensorType(el, shape)
    (got,) = run(lambda p, a, b: [A.SelectOp(p, a, b).result],
                 [TensorType(i1, shape), t, t], [c, x, y])
    check(got, np.where(c, x, y), el)


@pytest.mark.parametrize("src", [f64, f32, i64, i1], ids=str)
@pytest.mark.parametrize("dst", [f64, f32, i64, i1], ids=str)
def test_convert(src: Attribute, dst: Attribute) -> None:
    x = rand((2, 3), src, -5, 5)
    if src in (f64, f32):
        x[0, 0] = 0.0
    (got,) = run(lambda a: [A.ConvertOp(a, dst).result], [TensorType(src, (2, 3))], [x])
    check(got, x.astype(DTYPES[dst]), dst)


@pytest.mark.parametrize("el", [f64, f32, i64, i1], ids=str)
@pytest.mark.parametrize("src, dst", [((), (2, 3)), ((3,), (2, 3)), ((2, 1), (2, 3)),
                                      ((1, 3, 1), (2, 1, 3, 4)), ((1,), (1,))], ids=str)
def test_broadcast(el: Attribute, src: tuple[int, ...], dst: tuple[int, ...]) -> None:
    x = rand(src, el)
    (got,) = run(lambda a: [A.BroadcastOp(a, dst).result], [TensorType(el, src)], [x])
    check(got, np.broadcast_to(x, dst), el)


@pytest.mark.parametrize("src, dst", [((2, 3), (6,)), ((6,), (3, 2)), ((2, 3, 4), (4, 6)),
                                      ((1,), ()), ((), (1, 1)), ((2, 1, 3), (2, 3))], ids=str)
def test_reshape(src: tuple[int, ...], dst: tuple[int, ...]) -> None:
    for el in (f64, i1):
        x = rand(src, el)
        (got,) = run(lambda a: [A.ReshapeOp(a, dst).result], [TensorType(el, src)], [x])
        check(got, x.reshape(dst), el)


def test_reshape_of_fused_expression_and_broadcast() -> None:
    x = rand((3, 4), f64)

    def make(a: SSAValue) -> list[SSAValue]:
        r = A.ReshapeOp(A.TransposeOp(A.ExpOp(a), [1, 0]).result, [2, 6]).result
        s = A.ReshapeOp(A.SliceOp(a, [0, 3], [1, -2], [3, 2]).result, [6]).result
        return [A.MulOp(r, A.BroadcastOp(s, [2, 6]).result).result]

    (got,) = run(make, [TensorType(f64, (3, 4))], [x])
    check(got, np.exp(x).T.reshape(2, 6) * x[:, 3::-2].reshape(6), f64)


@pytest.mark.parametrize("perm", [(1, 0), (0, 1), (2, 0, 1), (1, 2, 0), (0, 2, 1)], ids=str)
def test_transpose(perm: tuple[int, ...]) -> None:
    shape = (2, 3, 4)[:len(perm)]
    for el in (f64, f32, i64):
        x = rand(shape, el)
        (got,) = run(lambda a: [A.TransposeOp(a, perm).result], [TensorType(el, shape)], [x])
        check(got, np.transpose(x, perm), el)


SLICES = [
    ((6,), (1,), (2,), (3,)),
    ((6,), (5,), (-1,), (6,)),
    ((6,), (5,), (-2,), (3,)),
    ((4, 5), (3, 0), (-1, 2), (4, 3)),
    ((4, 5), (1, 4), (2, -3), (2, 2)),
    ((3, 1, 4), (0, 0, 3), (1, 1, -1), (3, 1, 4)),
    ((5,), (2,), (1,), (0,)),
]


@pytest.mark.parametrize("shape, start, stride, out", SLICES, ids=str)
def test_slice(shape: tuple[int, ...], start: tuple[int, ...], stride: tuple[int, ...],
               out: tuple[int, ...]) -> None:
    x = rand(shape, f64)
    (got,) = run(lambda a: [A.SliceOp(a, start, stride, out).result],
                 [TensorType(f64, shape)], [x])
    index = tuple(np.arange(n) * st + s for s, st, n in zip(start, stride, out, strict=True))
    check(got, x[np.ix_(*index)] if index else x, f64)


@pytest.mark.parametrize("shape, start, stride, out", SLICES, ids=str)
def test_update_slice(shape: tuple[int, ...], start: tuple[int, ...], stride: tuple[int, ...],
                      out: tuple[int, ...]) -> None:
    x, v = rand(shape, f64), rand(out, f64)
    (got,) = run(lambda a, b: [A.UpdateSliceOp(a, b, start, stride).result],
                 [TensorType(f64, shape), TensorType(f64, out)], [x, v])
    want = x.copy()
    index = tuple(np.arange(n) * st + s for s, st, n in zip(start, stride, out, strict=True))
    want[np.ix_(*index)] = v
    check(got, want, f64)


REDUCE_CASES = [((5,), (0,)), ((3, 4), (1,)), ((3, 4), (0,)), ((3, 4), (0, 1)),
                ((2, 3, 4), (0, 2)), ((2, 3, 4), (1,)), ((2, 3, 4), ()), ((), ()),
                ((2, 1, 3), (1,)), ((4, 0), (1,))]
REDUCERS = [(A.ReduceSumOp, np.sum), (A.ReduceProdOp, np.prod), (A.ReduceMaxOp, np.max),
            (A.ReduceMinOp, np.min)]


@pytest.mark.parametrize("op, ref", REDUCERS, ids=[r[0].name for r in REDUCERS])
@pytest.mark.parametrize("shape, axes", REDUCE_CASES, ids=str)
def test_reduce(op: type[A.ReduceOp], ref: Callable, shape: tuple[int, ...],
                axes: tuple[int, ...]) -> None:
    if 0 in shape and op in (A.ReduceMaxOp, A.ReduceMinOp):
        return  # numpy has no identity for an empty max/min
    for el in (f64, f32, i64):
        x = rand(shape, el, 0.5, 1.5)
        (got,) = run(lambda a: [op(a, axes).result], [TensorType(el, shape)], [x])
        check(got, ref(x, axis=axes), el)


@pytest.mark.parametrize("shape, axis", [((5,), 0), ((3, 4), 0), ((3, 4), 1), ((2, 3, 4), 1),
                                         ((), 0)], ids=str)
@pytest.mark.parametrize("reverse", [False, True])
def test_cumsum(shape: tuple[int, ...], axis: int, reverse: bool) -> None:
    for el in (f64, i64):
        x = rand(shape, el)
        (got,) = run(lambda a: [A.CumsumOp(a, axis, reverse).result],
                     [TensorType(el, shape)], [x])
        if not shape:
            want = x
        elif reverse:
            want = np.flip(np.cumsum(np.flip(x, axis), axis), axis)
        else:
            want = np.cumsum(x, axis)
        check(got, want, el)


@pytest.mark.parametrize("src, idx, axis", [((5,), (3,), 0), ((4, 3), (2, 2), 0),
                                            ((4, 3), (5,), 1), ((2, 3, 4), (), 1),
                                            ((2, 3, 4), (2,), 2)], ids=str)
def test_take(src: tuple[int, ...], idx: tuple[int, ...], axis: int) -> None:
    x = rand(src, f64)
    n = src[axis]
    ind = RNG.integers(-n, n, size=idx).astype(np.int64)
    (got,) = run(lambda a, i: [A.TakeOp(a, i, axis).result],
                 [TensorType(f64, src), TensorType(i64, idx)], [x, ind])
    check(got, np.take(x, ind, axis=axis), f64)


@pytest.mark.parametrize("src, idx, axis", [((5,), (7,), 0), ((4, 3), (2, 2), 0),
                                            ((4, 3), (5,), 1), ((2, 3, 4), (), 1)], ids=str)
def test_scatter_add(src: tuple[int, ...], idx: tuple[int, ...], axis: int) -> None:
    for el in (f64, i64):
        x = rand(src, el)
        n = src[axis]
        ind = RNG.integers(-n, n, size=idx).astype(np.int64)
        upd_shape = (*src[:axis], *idx, *src[axis + 1:])
        u = rand(upd_shape, el)
        (got,) = run(lambda a, i, v: [A.ScatterAddOp(a, i, v, axis).result],
                     [TensorType(el, src), TensorType(i64, idx), TensorType(el, upd_shape)],
                     [x, ind, u])
        want = x.copy()
        moved = np.moveaxis(want, axis, 0)
        upd = u.reshape((*src[:axis], -1, *src[axis + 1:])) if idx else np.expand_dims(u, axis)
        np.add.at(moved, ind.reshape(-1) % n, np.moveaxis(upd, axis, 0))
        check(got, want, el)


@pytest.mark.parametrize("shapes, axis", [([(2,), (3,)], 0), ([(2, 3), (1, 3), (2, 3)], 0),
                                          ([(2, 3), (2, 1)], 1), ([(2, 2, 2)], 2)], ids=str)
def test_concatenate(shapes: list[tuple[int, ...]], axis: int) -> None:
    for el in (f64, i1):
        xs = [rand(s, el) for s in shapes]
        (got,) = run(lambda *a: [A.ConcatenateOp(list(a), axis).result],
                     [TensorType(el, s) for s in shapes], xs)
        check(got, np.concatenate(xs, axis), el)


@pytest.mark.parametrize("el, value", [(f64, 2.5), (f32, -1.5), (i64, 7), (i1, True)], ids=str)
def test_full(el: Attribute, value: float) -> None:
    for shape in ((), (2, 3)):
        (got,) = run(lambda s=shape: [A.FullOp(value, TensorType(el, s)).result], [], [])
        check(got, np.full(shape, value, DTYPES[el]), el)


@pytest.mark.parametrize("el", [f64, f32, i64], ids=str)
def test_constant(el: Attribute) -> None:
    values = np.arange(6).reshape(2, 3) * 1.5 if el != i64 else np.arange(6).reshape(2, 3)
    values = values.astype(DTYPES[el])
    t = TensorType(el, (2, 3))
    attr = DenseIntOrFPElementsAttr.from_list(t, values.reshape(-1).tolist())
    splat = DenseIntOrFPElementsAttr.from_list(t, [values.reshape(-1)[1].item()] * 6)
    got = run(lambda: [A.ConstantOp(attr).result, A.ConstantOp(splat).result], [], [])
    check(got[0], values, el)
    check(got[1], np.full((2, 3), values.reshape(-1)[1]), el)


@pytest.mark.parametrize("el", [f64, f32], ids=str)
@pytest.mark.parametrize("a_shape, b_shape, ta, tb", [
    ((3, 4), (4, 5), False, False), ((4, 3), (4, 5), True, False),
    ((3, 4), (5, 4), False, True), ((4, 3), (5, 4), True, True),
    ((2, 3, 4), (2, 4, 5), False, False), ((2, 4, 3), (2, 5, 4), True, True),
    ((1, 1), (1, 1), False, False), ((3, 1), (1, 2), False, False),
], ids=str)
def test_matmul(el: Attribute, a_shape: tuple[int, ...], b_shape: tuple[int, ...], ta: bool,
                tb: bool) -> None:
    x, y = rand(a_shape, el), rand(b_shape, el)

    def swap(v: SSAValue, flag: bool) -> SSAValue:
        r = len(A.shape_of(v))
        return A.TransposeOp(v, [*range(r - 2), r - 1, r - 2]).result if flag else v

    (got,) = run(lambda a, b: [A.MatmulOp(swap(a, ta), swap(b, tb)).result],
                 [TensorType(el, a_shape), TensorType(el, b_shape)], [x, y])
    xs = np.swapaxes(x, -1, -2) if ta else x
    ys = np.swapaxes(y, -1, -2) if tb else y
    check(got, xs @ ys, el)


def test_matmul_of_fused_operands() -> None:
    x, y = rand((3, 4), f64), rand((4, 2), f64)
    (got,) = run(lambda a, b: [A.MatmulOp(A.ExpOp(a).result, A.MulOp(b, b).result).result],
                 [TensorType(f64, (3, 4)), TensorType(f64, (4, 2))], [x, y])
    check(got, np.exp(x) @ (y * y), f64)
