"""Derivative checks shared by the compiler tests: AD results against central
finite differences, with every function run by the reference interpreter."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from pullback.compiler.autodiff.forward import JvpPass
from pullback.compiler.autodiff.reverse import AutodiffPass
from pullback.compiler.context import make_context
from pullback.compiler.dialects.array import element_type_of
from pullback.compiler.interpreter import dtype_of, evaluate, find_function

STEP = 1e-6


def _step(ref: func.FuncOp, args: Sequence[np.ndarray], rtol: float,
          atol: float) -> tuple[float, float, float]:
    """Step and tolerances: wider when the reference itself computes in f32."""
    outs = evaluate(ref, args)
    if any(y.dtype == np.float32 for y in outs):
        return 1e-3, max(rtol, 1e-3), max(atol, 1e-4)
    return STEP, rtol, atol


def attr_ints(f: func.FuncOp, key: str) -> list[int]:
    """The `array<i64: ...>` attribute `key` of `f` as a list."""
    return [int(v) for v in f.attributes[key].get_values()]  # type: ignore[attr-defined]


def _is_float_arg(f: func.FuncOp, i: int) -> bool:
    return np.issubdtype(_dtype(f, i), np.floating)


def _dtype(f: func.FuncOp, i: int) -> np.dtype:
    return dtype_of(element_type_of(f.body.block.args[i]))


def derivative(module: ModuleOp, name: str, kind: str) -> func.FuncOp:
    """`@name_<kind>`, made by the matching pass if the module lacks it."""
    target = f"{name}_{kind}"
    if not any(isinstance(op, func.FuncOp) and op.sym_name.data == target
               for op in module.ops):
        pass_ = AutodiffPass(func=name) if kind == "vjp" else JvpPass(func=name)
        pass_.apply(make_context(), module)
        module.verify()
    return find_function(module, target)


def _as64(args: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a for a in args]


def _shifted(args: Sequence[np.ndarray], i: int, j: int, h: float) -> list[np.ndarray]:
    out = list(args)
    x = args[i].copy()
    x.reshape(-1)[j] += h
    out[i] = x
    return out


def check_vjp(module: ModuleOp, name: str, args: Sequence[np.ndarray],
              rng: np.random.Generator, *, reference: ModuleOp | None = None,
              rtol: float = 1e-5, atol: float = 1e-6) -> func.FuncOp:
    """`@name_vjp` against central differences of <cotangent, @name> (run in f64 on
    `reference`, default `module`); absent gradients count as zeros."""
    f = find_function(module, name)
    g = derivative(module, name, "vjp")
    wrt, cots = attr_ints(g, "pullback.wrt"), attr_ints(g, "pullback.cotangents")
    outs = evaluate(f, args)
    cts = [rng.standard_normal(outs[i].shape).astype(outs[i].dtype) for i in cots]
    res = evaluate(g, [*args, *cts])
    for got, want in zip(res[:len(outs)], outs, strict=True):
        np.testing.assert_array_equal(got, want)
    grads = dict(zip(wrt, res[len(outs):], strict=True))
    assert all(_is_float_arg(f, i) for i in wrt), f"gradient for a non-float argument: {wrt}"

    ref = find_function(reference or module, name)
    args64 = _as64(args)
    cts64 = _as64(cts)
    step, rtol, atol = _step(ref, args64, rtol, atol)

    def phi(xs: Sequence[np.ndarray]) -> float:
        ys = evaluate(ref, xs)
        return sum(float(np.sum(ys[i] * ct)) for i, ct in zip(cots, cts64, strict=True))

    for i, x in enumerate(args64):
        if not _is_float_arg(f, i):
            continue
        fd = np.array([
            (phi(_shifted(args64, i, j, step)) - phi(_shifted(args64, i, j, -step))) / (2 * step)
            for j in range(x.size)
        ]).reshape(x.shape)
        got = grads.get(i, np.zeros_like(args[i]))
        assert got.shape == args[i].shape and got.dtype == args[i].dtype
        np.testing.assert_allclose(got, fd, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of argument {i} of @{name}")
    return g


def check_jvp(module: ModuleOp, name: str, args: Sequence[np.ndarray],
              rng: np.random.Generator, *, reference: ModuleOp | None = None,
              rtol: float = 1e-5, atol: float = 1e-6) -> func.FuncOp:
    """`@name_jvp` against central differences of @name along the tangents."""
    f = find_function(module, name)
    g = derivative(module, name, "jvp")
    takes = attr_ints(g, "pullback.tangents")
    assert takes == [i for i in range(len(args)) if _is_float_arg(f, i)]
    tangents = [rng.standard_normal(args[i].shape).astype(args[i].dtype) for i in takes]
    outs = evaluate(f, args)
    res = evaluate(g, [*args, *tangents])
    for got, want in zip(res[:len(outs)], outs, strict=True):
        np.testing.assert_array_equal(got, want)
    float_outs = [k for k, y in enumerate(outs) if np.issubdtype(y.dtype, np.floating)]
    assert len(res) == len(outs) + len(float_outs)

    ref = find_function(reference or module, name)
    args64 = _as64(args)
    step, rtol, atol = _step(ref, args64, rtol, atol)

    def moved(h: float) -> list[np.ndarray]:
        xs = list(args64)
        for i, t in zip(takes, tangents, strict=True):
            xs[i] = xs[i] + h * t.astype(np.float64)
        return evaluate(ref, xs)

    plus, minus = moved(step), moved(-step)
    for k, got in zip(float_outs, res[len(outs):], strict=True):
        fd = (plus[k].astype(np.float64) - minus[k]) / (2 * step)
        assert got.shape == outs[k].shape and got.dtype == outs[k].dtype
        np.testing.assert_allclose(got, fd, rtol=rtol, atol=atol,
                                   err_msg=f"tangent of result {k} of @{name}")
    return g


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def vjp_checker():
    """`check_vjp(module, name, args, rng, reference=, rtol=, atol=)`."""
    return check_vjp


@pytest.fixture(scope="session")
def jvp_checker():
    """`check_jvp(module, name, args, rng, reference=, rtol=, atol=)`."""
    return check_jvp
