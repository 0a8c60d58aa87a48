"""expand-math: polynomial exp/expm1/tanh/log/log1p against numpy, in ulps.

f64 results are compared with numpy's; f32 results (computed in f64, then rounded)
with numpy's f64 result rounded to f32, since numpy's own float32 routines are up to
3 ulp away from the correctly rounded value.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import numpy as np
import pytest
from xdsl.builder import ImplicitBuilder
from xdsl.dialects import arith, func, math, memref, scf
from xdsl.dialects.builtin import (
    FunctionType,
    IndexType,
    MemRefType,
    ModuleOp,
    TensorType,
    f32,
    f64,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from pullback.compiler.backends.llvm import compile_function, jit
from pullback.compiler.context import make_context
from pullback.compiler.conversion.loops_to_llvm import ConvertLoopsToLLVMPass
from pullback.compiler.dialects import array as A
from pullback.compiler.passes import get_pass
from pullback.compiler.transforms.expand_math import ExpandMathPass

RNG = np.random.default_rng(7)
MATH_OPS: dict[str, tuple[type[Operation], Callable[[np.ndarray], np.ndarray]]] = {
    "exp": (math.ExpOp, np.exp),
    "expm1": (math.ExpM1Op, np.expm1),
    "tanh": (math.TanhOp, np.tanh),
    "log": (math.LogOp, np.log),
    "log1p": (math.Log1pOp, np.log1p),
}
DTYPES = {np.float64: f64, np.float32: f32}


def _kernel(op_class: type[Operation], element: Attribute, n: int) -> ModuleOp:
    """`@k(x, y)`: y[i] = op(x[i]) for i < n, at kernel level."""
    t = MemRefType(element, [n])
    fn = func.FuncOp("k", ([t, t], []))
    with ImplicitBuilder(fn.body) as (x, y):
        bounds = [arith.ConstantOp.from_int_and_width(v, IndexType()) for v in (0, n, 1)]
        loop = scf.ForOp(*bounds, [], Region(Block(arg_types=[IndexType()])))
        with ImplicitBuilder(loop.body) as (i,):
            value = memref.LoadOp.get(x, [i])
            memref.StoreOp.get(op_class(value).results[0], y, [i])
            scf.YieldOp()
        func.ReturnOp()
    return ModuleOp([fn])


class _Compiled:
    """A kernel module expanded, lowered, optimized and JIT-compiled."""

    def __init__(self, module: ModuleOp, dtype: type[np.generic]) -> None:
        ctx = make_context()
        ExpandMathPass().apply(ctx, module)
        module.verify()
        self.expanded = str(module)
        ConvertLoopsToLLVMPass().apply(ctx, module)
        tm = jit.host_target_machine()
        ref = jit.parse(jit.translate(module), tm)
        jit.optimize(ref, tm)
        self.llvm_ir = str(ref)
        self.engine = jit.jit(ref, tm)
        self.fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(
            self.engine.get_function_address("k"))
        self.dtype = dtype

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, self.dtype)
        y = np.empty_like(x)
        self.fn(x.ctypes.data, y.ctypes.data)
        return y


def run(name: str, x: np.ndarray) -> np.ndarray:
    op_class, _ = MATH_OPS[name]
    return _Compiled(_kernel(op_class, DTYPES[x.dtype.type], x.size), x.dtype.type)(x)


def ulp_distance(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in representable numbers; NaN to NaN is 0, +0 to -0 is 1."""
    signed = np.int64 if got.dtype == np.float64 else np.int32

    def ordinal(a: np.ndarray) -> np.ndarray:
        bits = a.view(signed).astype(np.int64)
        return np.where(bits < 0, np.iinfo(signed).min - bits, bits)

    d = np.abs(ordinal(got) - ordinal(want)).astype(np.float64)
    d[np.isnan(got) & np.isnan(want)] = 0
    return d


def reference(name: str, x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return MATH_OPS[name][1](x.astype(np.float64)).astype(x.dtype)


def log_uniform(low: float, high: float, n: int, signed: bool = True) -> np.ndarray:
    """|x| = 10^u, u uniform in [low, high]; random signs when `signed`."""
    x = 10.0 ** RNG.uniform(low, high, n)
    return x * RNG.choice([-1.0, 1.0], n) if signed else x


# Where each function's result is neither 0, +-1 nor +-inf (f64 exponents of 10).
DOMAINS = {"exp": (-18, 2.86), "expm1": (-18, 2.86), "tanh": (-18, 1.4),
           "log": (-320, 308), "log1p": (-18, 308)}


def points(name: str, dtype: type[np.generic], n: int) -> np.ndarray:
    low, high = DOMAINS[name]
    if dtype == np.float32:
        low, high = max(low, -45), min(high, 38)
    x = np.concatenate([log_uniform(low, high, n), RNG.uniform(-2, 2, n)])
    if name == "log":
        x = np.abs(x)
    if name == "log1p":
        x = np.concatenate([x[x > -1], -1 + log_uniform(-16, 0, n // 4, signed=False)])
    with np.errstate(over="ignore"):
        return x.astype(dtype)


@pytest.mark.parametrize("name", sorted(MATH_OPS))
def test_f64_within_two_ulp_of_numpy(name: str) -> None:
    x = points(name, np.float64, 40_000)
    d = ulp_distance(run(name, x), reference(name, x))
    assert d.max() <= 2, f"{name}({x[np.argmax(d)]!r}) is {d.max()} ulp from numpy"


@pytest.mark.parametrize("name", sorted(MATH_OPS))
def test_f32_within_one_ulp_of_rounded_f64(name: str) -> None:
    x = points(name, np.float32, 40_000)
    d = ulp_distance(run(name, x), reference(name, x))
    assert d.max() <= 1, f"{name}({x[np.argmax(d)]!r}) is {d.max()} ulp off"


SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, 2.0, 5e-324, -5e-324,
            2.2250738585072014e-308, 1e-300, 1e-30, -1e-30, 1e-20, 1e-14, 1e-12, 1e-10,
            -1e-10, 709.78, 709.79, 710.0, 1e5, -708.4, -745.13, -745.2, -1e5,
            88.72, 88.73, -87.3, -103.9, -104.0, 19.0, 20.0, 9.0, 10.0, -0.999999, 1e308]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(MATH_OPS))
def test_special_values(name: str, dtype: type[np.generic]) -> None:
    """inf, NaN, signed zeros, overflow, underflow, subnormals, tiny arguments."""
    with np.errstate(over="ignore"):
        x = np.array(SPECIALS, dtype)
    got, want = run(name, x), reference(name, x)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    exact = ~np.isfinite(want) | (want == 0)
    np.testing.assert_array_equal(got[exact], want[exact])
    numbers = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[numbers]), np.signbit(want[numbers]))
    assert ulp_distance(got, want).max() <= (2 if dtype == np.float64 else 1)


@pytest.mark.parametrize(("name", "x", "want"), [
    ("tanh", 1e-10, 1e-10 - 1e-30 / 3),
    ("expm1", 1e-12, 1e-12 + 1e-24 / 2),
    ("log1p", 1e-14, 1e-14 - 1e-28 / 2),
    ("expm1", -3e-9, -3e-9 + 9e-18 / 2 - 27e-27 / 6),
    ("exp", 1.0, 2.718281828459045),
    ("log", 2.0, 0.6931471805599453),
    ("exp", -745.1, 5e-324),
])
def test_small_arguments_keep_full_precision(name: str, x: float, want: float) -> None:
    got = run(name, np.array([x]))[0]
    assert got == pytest.approx(want, rel=3e-16, abs=0)


def test_subnormal_results_are_rounded_once() -> None:
    x = np.linspace(-745.0, -708.0, 20_001)
    d = ulp_distance(run("exp", x), np.exp(x))
    assert d.max() <= 1


@pytest.mark.parametrize("name", sorted(MATH_OPS))
def test_expanded_loop_vectorizes(name: str) -> None:
    compiled = _Compiled(_kernel(MATH_OPS[name][0], f64, 1000), np.float64)
    assert f"math.{name}" not in compiled.expanded
    assert "x double>" in compiled.llvm_ir
    for libm in ("tanh", "exp", "expm1", "log", "log1p"):
        assert f"@{libm}(" not in compiled.llvm_ir and f"@llvm.{libm}." not in compiled.llvm_ir


def test_other_ops_and_types_are_left_alone() -> None:
    module = _kernel(math.SinOp, f64, 8)
    before = str(module)
    ExpandMathPass().apply(make_context(), module)
    assert str(module) == before
    fn = func.FuncOp("g", ([i64], [i64]))
    with ImplicitBuilder(fn.body) as (v,):
        func.ReturnOp(math.AbsIOp(v).result)
    module = ModuleOp([fn])
    before = str(module)
    get_pass("expand-math")().apply(make_context(), module)
    assert str(module) == before


def test_compiled_sum_of_tanh_is_vector_code() -> None:
    n = 4096
    t = TensorType(f64, (n,))
    fn = func.FuncOp("f", ([t], []))
    with ImplicitBuilder(fn.body) as (x,):
        total: SSAValue = A.ReduceSumOp(A.TanhOp(x).result, [0]).result
        func.ReturnOp(total)
    fn.function_type = FunctionType.from_lists([t], [total.type])
    executable = compile_function(ModuleOp([fn]), "f")
    ir = executable.llvm_ir
    assert "<4 x double>" in ir or "<8 x double>" in ir
    assert "@tanh(" not in ir and "@llvm.tanh." not in ir
    x = RNG.normal(size=n)
    np.testing.assert_allclose(executable.run([x])[0], np.tanh(x).sum(), rtol=1e-12)
