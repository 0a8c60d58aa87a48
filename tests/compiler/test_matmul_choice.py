"""The matrix-product choice per call site (`matmul_choice`): own GEMM below the size
threshold, BLAS above it, results equal to numpy's `matmul` either way."""

from __future__ import annotations

import numpy as np
import pytest
from llvmlite import ir
from xdsl.builder import ImplicitBuilder
from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp, TensorType, f32, f64

from pullback.compiler.backends.llvm import compile_function, matmul_choice
from pullback.compiler.backends.llvm.matmul_choice import define_chosen_matmul, uses_own_gemm
from pullback.compiler.dialects import array as A

# (a shape, b shape): products of 3*5*4 = 60 and 2 * (6*8*7) = 2 * 336 multiply-adds
CASES = [((3, 4), (4, 5)), ((2, 6, 7), (2, 7, 8))]
RTOL = {"f32": 1e-5, "f64": 1e-12}


def _products(element: TensorType) -> ModuleOp:
    types = [TensorType(element, list(s)) for pair in CASES for s in pair]
    fn = func.FuncOp("f", (types, []))
    with ImplicitBuilder(fn.body) as args:
        outs = [A.MatmulOp(args[2 * i], args[2 * i + 1]).result for i in range(len(CASES))]
        func.ReturnOp(*outs)
    fn.function_type = FunctionType.from_lists(types, [o.type for o in outs])
    return ModuleOp([fn])


def _check(exe, dtype: type, rtol: float) -> None:
    rng = np.random.default_rng(3)
    inputs = [rng.uniform(-1, 1, s).astype(dtype) for pair in CASES for s in pair]
    got = exe.run(inputs)
    for i in range(len(CASES)):
        want = np.matmul(inputs[2 * i], inputs[2 * i + 1])
        np.testing.assert_allclose(got[i], want, rtol=rtol, atol=rtol * 10)


@pytest.mark.parametrize("own_below", [None, 100, 1])
@pytest.mark.parametrize("element", ["f32", "f64"])
def test_choice_per_call_site(monkeypatch: pytest.MonkeyPatch, own_below: int | None,
                              element: str) -> None:
    """Default threshold: both products through the own GEMM, no BLAS symbol. Threshold
    100: the 60-term product own, the 336-term ones BLAS. Threshold 1: all BLAS."""
    if own_below is not None:
        monkeypatch.setattr(matmul_choice, "OWN_BELOW", own_below)
    dtype = {"f32": np.float32, "f64": np.float64}[element]
    exe = compile_function(_products(f32 if element == "f32" else f64), "f", gemm="auto")
    routine = {"f32": "pullback_sgemm", "f64": "pullback_dgemm"}[element]
    assert (routine in exe.symbols) == (own_below is not None), exe.symbols
    _check(exe, dtype, RTOL[element])


def test_default_is_the_choice() -> None:
    """`compile_function` without `gemm` chooses by size: small products call no BLAS."""
    exe = compile_function(_products(f64), "f")
    assert not any("gemm" in s for s in exe.symbols), exe.symbols
    _check(exe, np.float64, RTOL["f64"])


def test_threshold() -> None:
    below = matmul_choice.OWN_BELOW
    assert uses_own_gemm(256, 256, 784)  # the MLP's largest product
    assert uses_own_gemm(200, 1000, 1000)  # the Jacobian workload's product
    assert not uses_own_gemm(1024, 1024, 1024)
    assert uses_own_gemm(1, 1, below - 1) and not uses_own_gemm(1, 1, below)


def test_sizes_not_constant_go_to_blas() -> None:
    """A site whose sizes are not constants (lowering never emits one) is called through
    BLAS, which takes any size; a site with constant sizes in the same module stays own."""
    module = ir.Module()
    ptr, i64 = ir.PointerType(), ir.IntType(64)
    signature = ir.FunctionType(ir.VoidType(), [ptr] * 3 + [i64] * 6)
    matmul = ir.Function(module, signature, name="pullback_matmul_f64")
    entry = ir.Function(module, signature, name="entry")
    builder = ir.IRBuilder(entry.append_basic_block())
    a, b, c, batch, m, n, k, ta, tb = entry.args
    dynamic = builder.call(matmul, [a, b, c, batch, m, n, k, ta, tb])
    small = builder.call(matmul, [a, b, c, *(ir.Constant(i64, v) for v in (1, 2, 3, 4, 0, 0))])
    builder.ret_void()
    define_chosen_matmul(module, "f64")
    assert dynamic.callee.name == "pullback_matmul_f64_blas"
    assert small.callee.name == "pullback_matmul_f64"
    assert not matmul.is_declaration and not dynamic.callee.is_declaration


def test_rejects_a_module_without_the_declaration() -> None:
    with pytest.raises(ValueError, match="no declared pullback_matmul_f32"):
        define_chosen_matmul(ir.Module(), "f32")


def test_disk_cache_key_covers_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk compile cache keys hash pullback's sources, this module's among them: a
    changed threshold or choice gives new keys, so no object built under the old one is
    reused."""
    import builtins
    import io
    import os

    from pullback import disk_compile_cache

    before = disk_compile_cache._source_fingerprint()
    path = os.path.realpath(matmul_choice.__file__)
    real_open = builtins.open

    def edited_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(file, str) and os.path.realpath(file) == path and "b" in mode:
            with real_open(file, mode, *args, **kwargs) as f:
                return io.BytesIO(f.read().replace(b"OWN_BELOW = 2**30", b"OWN_BELOW = 2**20"))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", edited_open)
    assert disk_compile_cache._source_fingerprint() != before
