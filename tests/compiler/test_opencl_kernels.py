"""OpenCL kernel shapes: long and partial reductions (split across work-groups),
matrix products (transposes, batches, odd sizes), multi-output functions, a gradient
program; CPU- and GPU-style kernels, against numpy and the LLVM backend."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from opencl_platform import NO_OPENCL
from xdsl.builder import ImplicitBuilder
from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp, TensorType, f32, f64
from xdsl.ir import Attribute, SSAValue

from pullback.compiler.backends import llvm, opencl
from pullback.compiler.context import make_context
from pullback.compiler.dialects import array as A
from pullback.compiler.passes import get_pass

pytestmark = NO_OPENCL

DTYPES = {f64: np.float64, f32: np.float32}


def module_of(make: Callable[..., Sequence[SSAValue]], arg_types: Sequence[Attribute],
              name: str = "f") -> ModuleOp:
    """`@name(args) = make(args)` in a module."""
    fn = func.FuncOp(name, (list(arg_types), []))
    with ImplicitBuilder(fn.body) as block_args:
        outs = list(make(*block_args))
        func.ReturnOp(*outs)
    fn.function_type = FunctionType.from_lists(list(arg_types), [o.type for o in outs])
    return ModuleOp([fn])


def tensor(el: Attribute, *shape: int) -> TensorType:
    return TensorType(el, list(shape))


def close(got: np.ndarray, want: np.ndarray, el: Attribute, what: str = "") -> None:
    want = np.asarray(want)
    assert got.shape == want.shape and got.dtype == np.dtype(DTYPES[el]), what
    rtol = 1e-12 if el == f64 else 1e-5
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1.0)
    np.testing.assert_allclose(got, want.astype(got.dtype), rtol=rtol, atol=rtol * scale,
                               err_msg=what)


# -- reductions ---------------------------------------------------------------

REDUCE_SHAPES = [
    ("full sum", A.ReduceSumOp, (100_003,), [0], np.sum),
    ("full max", A.ReduceMaxOp, (70_001,), [0], np.max),
    ("full min 2-d", A.ReduceMinOp, (301, 257), [0, 1], np.min),
    ("few long rows", A.ReduceSumOp, (3, 40_000), [1], np.sum),
    ("many short rows", A.ReduceSumOp, (2_000, 33), [1], np.sum),
    ("leading axis", A.ReduceSumOp, (5_000, 3), [0], np.sum),
    ("prod", A.ReduceProdOp, (2, 9_000), [1], np.prod),
]


def _reduce_module(el: Attribute) -> ModuleOp:
    types = [tensor(el, *shape) for _, _, shape, _, _ in REDUCE_SHAPES]
    return module_of(lambda *xs: [cls(x, axes).result for x, (_, cls, _, axes, _)
                                  in zip(xs, REDUCE_SHAPES, strict=True)], types)


def _reduce_inputs(el: Attribute) -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    out = []
    for name, _, shape, _, _ in REDUCE_SHAPES:
        low, high = (0.999, 1.001) if name == "prod" else (-1.0, 2.0)
        out.append(rng.uniform(low, high, shape).astype(DTYPES[el]))
    return out


@pytest.fixture(scope="module", params=[(f64, "cpu"), (f32, "gpu")], ids=["f64-cpu", "f32-gpu"])
def reductions(request: pytest.FixtureRequest) -> dict[str, Any]:
    el, style = request.param
    module, inputs = _reduce_module(el), _reduce_inputs(el)
    exe = opencl.compile_function(module, "f", style=style)
    return {"el": el, "inputs": inputs, "exe": exe, "opencl": exe.run(inputs),
            "llvm": llvm.compile_function(module, "f").run(inputs)}


@pytest.mark.parametrize("index", range(len(REDUCE_SHAPES)), ids=[r[0] for r in REDUCE_SHAPES])
def test_reduction(reductions: dict[str, Any], index: int) -> None:
    name, _, _, axes, ref = REDUCE_SHAPES[index]
    el, got = reductions["el"], reductions["opencl"][index]
    x = reductions["inputs"][index].astype(np.float64)
    close(got, ref(x, axis=tuple(axes)), el if el == f64 else f32, f"{name} vs numpy")
    close(got, reductions["llvm"][index], el, f"{name} vs LLVM")


def test_long_reductions_are_split_across_a_work_group(reductions: dict[str, Any]) -> None:
    source = reductions["exe"].opencl_source
    assert "group-reduce" in source and "barrier(CLK_LOCAL_MEM_FENCE)" in source


# -- matrix products ----------------------------------------------------------

def _swap(x: SSAValue) -> SSAValue:
    r = len(A.shape_of(x))
    return A.TransposeOp(A.NegOp(x).result, [*range(r - 2), r - 1, r - 2]).result


MATMULS = [
    ("plain", (5, 7), (7, 9), False, False),
    ("trans lhs", (7, 5), (7, 9), True, False),
    ("trans rhs", (5, 7), (9, 7), False, True),
    ("trans both", (7, 5), (9, 7), True, True),
    ("batch", (3, 5, 4), (3, 4, 6), False, False),
    ("batch trans", (2, 6, 5), (2, 7, 6), True, True),
    ("odd", (33, 17), (17, 65), False, False),
    ("vector", (1, 1), (1, 13), False, False),
    ("k one", (9, 1), (1, 8), False, False),
]


def _matmul_module(el: Attribute) -> ModuleOp:
    types = [tensor(el, *s) for _, a, b, _, _ in MATMULS for s in (a, b)]

    def make(*xs: SSAValue) -> list[SSAValue]:
        outs = []
        for i, (_, _, _, ta, tb) in enumerate(MATMULS):
            a, b = xs[2 * i], xs[2 * i + 1]
            outs.append(A.MatmulOp(_swap(a) if ta else a, _swap(b) if tb else b).result)
        return outs
    return module_of(make, types)


def _matmul_reference(a: np.ndarray, b: np.ndarray, ta: bool, tb: bool) -> np.ndarray:
    a = -np.swapaxes(a, -1, -2) if ta else a
    b = -np.swapaxes(b, -1, -2) if tb else b
    return np.matmul(a.astype(np.float64), b.astype(np.float64))


@pytest.mark.parametrize("el, style", [(f64, "cpu"), (f32, "cpu"), (f64, "gpu"), (f32, "gpu")],
                         ids=["f64-cpu", "f32-cpu", "f64-gpu", "f32-gpu"])
def test_matmul(el: Attribute, style: str) -> None:
    module = _matmul_module(el)
    rng = np.random.default_rng(3)
    inputs = [rng.uniform(-1, 1, s).astype(DTYPES[el]) for _, a, b, _, _ in MATMULS
              for s in (a, b)]
    exe = opencl.compile_function(module, "f", style=style)
    assert "pullback_matmul_" in exe.opencl_source
    got = exe.run(inputs)
    ref_llvm = llvm.compile_function(module, "f").run(inputs)
    for i, (name, _, _, ta, tb) in enumerate(MATMULS):
        want = _matmul_reference(inputs[2 * i], inputs[2 * i + 1], ta, tb)
        close(got[i], want, el, f"{name} vs numpy")
        close(got[i], ref_llvm[i], el, f"{name} vs LLVM")


def test_transposed_operands_become_flags() -> None:
    exe = opencl.compile_function(_matmul_module(f32), "f", style="cpu")
    for flags in ("nn", "tn", "nt", "tt"):
        assert f"pullback_matmul_f32_{flags}(" in exe.opencl_source


# -- whole programs -----------------------------------------------------------

def _mlp(el: Attribute) -> ModuleOp:
    """Two outputs: a layer `tanh(x @ w + b)` and its sum; plus an input passed through."""
    def make(x: SSAValue, w: SSAValue, b: SSAValue) -> list[SSAValue]:
        h = A.MatmulOp(x, w).result
        y = A.TanhOp(A.AddOp(h, A.BroadcastOp(b, (4, 6)).result).result).result
        return [y, A.ReduceSumOp(y, [0, 1]).result, x]
    return module_of(make, [tensor(el, 4, 3), tensor(el, 3, 6), tensor(el, 6)])


@pytest.mark.parametrize("el", [f64, f32], ids=str)
def test_multi_output_program(el: Attribute) -> None:
    rng = np.random.default_rng(4)
    inputs = [rng.standard_normal(s).astype(DTYPES[el]) for s in ((4, 3), (3, 6), (6,))]
    exe = opencl.compile_function(_mlp(el), "f", keep_ir=True)
    y, total, x = exe.run(inputs)
    want = np.tanh(inputs[0].astype(np.float64) @ inputs[1] + inputs[2])
    close(y, want, el)
    close(total, want.sum(), el)
    np.testing.assert_array_equal(x, inputs[0])
    kernel_passes = ["keep-functions", "inline-checkpoints", "drop-eager-updates",
                     "drop-identities", "schedule-writes", "fuse", "bufferize",
                     "convert-kernels-to-loops", "memory-plan"]
    assert list(exe.stages) == kernel_passes
    assert set(exe.timings) >= {*kernel_passes, "emit", "build"}
    for zero_copy in (True, False):  # in-place host buffers, then explicit copies
        exe._zero_copy = zero_copy
        again = exe.run(inputs)
        for a, b in zip(again, (y, total, x), strict=True):
            assert a is not b
            np.testing.assert_array_equal(a, b)


def test_gradient_program_matches_llvm() -> None:
    module = module_of(lambda x, w, b: [A.ReduceSumOp(A.TanhOp(A.AddOp(
        A.MatmulOp(x, w).result, A.BroadcastOp(b, (4, 6)).result).result).result,
        [0, 1]).result], [tensor(f64, 4, 3), tensor(f64, 3, 6), tensor(f64, 6)])
    get_pass("autodiff")(func="f").apply(make_context(), module)
    vjp = next(op for op in module.body.block.ops
               if isinstance(op, func.FuncOp) and op.sym_name.data == "f_vjp")
    rng = np.random.default_rng(5)
    inputs = [rng.standard_normal(t.get_shape()).astype(np.float64)
              for t in vjp.function_type.inputs]
    got = opencl.compile_function(module, "f_vjp").run(inputs)
    x, w, b, ct = inputs
    t = np.tanh(x @ w + b)
    dt = (1 - t * t) * ct
    for g, want, what in zip(got, (t.sum(), dt @ w.T, x.T @ dt, dt.sum(0)),
                             ("value", "dx", "dw", "db"), strict=True):
        close(g, want, f64, f"{what} vs numpy")
    for g, want in zip(got, llvm.compile_function(module, "f_vjp").run(inputs), strict=True):
        close(g, want, f64, "vs LLVM")


def test_threads_share_an_executable() -> None:
    module = module_of(lambda x: [A.ExpOp(x).result], [tensor(f64, 1000)])
    exe = opencl.compile_function(module, "f")
    rng = np.random.default_rng(6)
    xs = [rng.standard_normal(1000) for _ in range(8)]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(5):
            results[i] = exe.run([xs[i]])[0]
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, x in enumerate(xs):
        close(results[i], np.exp(x), f64)


def test_bad_inputs_are_rejected() -> None:
    exe = opencl.compile_function(module_of(lambda x: [A.NegOp(x).result],
                                            [tensor(f32, 2, 3)]), "f")
    with pytest.raises(ValueError, match="takes 1 arrays"):
        exe.run([])
    with pytest.raises(ValueError, match="float32 array of shape \\(2, 3\\)"):
        exe.run([np.zeros((2, 3))])
    with pytest.raises(ValueError, match="non-contiguous"):
        exe.run([np.zeros((3, 2), np.float32).T])
