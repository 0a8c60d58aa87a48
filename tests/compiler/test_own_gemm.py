"""pullback's own matrix product (`gemm.define_own_matmul`) against numpy's `matmul`.

The generated function is compiled alone (a tiny module that declares it and calls
it) for every vector width the code generator knows, and run on seeded random
inputs over shapes chosen around its block sizes: empty and unit dimensions, primes,
one less / equal / one more than the tile rows, the panel width, the vector width
and the k block, batches of 0, 1 and 3, with all four transpose combinations. A and B
end where an unreadable page starts, so a read past them stops the test.
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
from collections.abc import Callable, Iterator
from functools import cache

import numpy as np
import pytest
from llvmlite import binding, ir
from xdsl.builder import ImplicitBuilder
from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp, TensorType, f32, f64
from xdsl.ir import SSAValue

from pullback.compiler.backends.llvm import compile_function, jit
from pullback.compiler.backends.llvm.gemm import (
    define_own_matmul,
    host_vector_bits,
    tiling,
    vector_bits_for,
)
from pullback.compiler.dialects import array as A

_PTR = ir.PointerType()
_I64 = ir.IntType(64)
_SIGNATURE = ir.FunctionType(ir.VoidType(), [_PTR] * 3 + [_I64] * 6)
_CALL = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 3 + [ctypes.c_int64] * 6))
DTYPES = {"f32": np.float32, "f64": np.float64}
RTOL = {"f32": 1e-5, "f64": 1e-12}  # relative to (|A| @ |B|), the scale of the rounding
WIDTHS = (128, 256, 512)
GUARD = 37  # sentinel elements either side of C, which must stay untouched
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _fenced(array: np.ndarray) -> tuple[int, object]:
    """A copy of `array` ending where an unreadable page starts: reading past its end
    stops the process. Returns its address and the object that keeps it alive."""
    page = mmap.PAGESIZE
    size = -(-max(array.nbytes, 1) // page) * page + page
    memory = mmap.mmap(-1, size, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    if _LIBC.mprotect(base + size - page, page, 0) != 0:  # PROT_NONE
        raise OSError(ctypes.get_errno(), "mprotect failed")
    start = base + size - page - array.nbytes
    ctypes.memmove(start, array.ctypes.data, array.nbytes)
    return start, memory


def _module(element: str, vector_bits: int) -> ir.Module:
    module = ir.Module()
    fn = ir.Function(module, _SIGNATURE, name=f"pullback_matmul_{element}")
    entry = ir.Function(module, _SIGNATURE, name="entry")
    builder = ir.IRBuilder(entry.append_basic_block())
    builder.call(fn, list(entry.args))
    builder.ret_void()
    define_own_matmul(module, element, vector_bits)
    return module


def _baseline_target_machine() -> binding.TargetMachine:
    """The host architecture's baseline CPU: no vector extension beyond the minimum."""
    jit.host_target_machine()  # initialises the native target
    target = binding.Target.from_triple(binding.get_process_triple())
    return target.create_target_machine(cpu="generic", features="", opt=3, jit=True)


@cache
def _compiled(element: str, vector_bits: int,
              baseline: bool = False) -> tuple[binding.ExecutionEngine, Callable[..., None]]:
    tm = _baseline_target_machine() if baseline else jit.host_target_machine()
    ref = jit.parse(_module(element, vector_bits), tm)
    ref.verify()
    jit.optimize(ref, tm)
    engine = jit.jit(ref, tm)
    return engine, _CALL(engine.get_function_address("entry"))


def _shapes(element: str, vector_bits: int) -> Iterator[tuple[int, int, int, int]]:
    """(batch, m, n, k) around the block sizes of this element and width."""
    t = tiling(element, vector_bits)
    ms = sorted({0, 1, 2, t.mr - 1, t.mr, t.mr + 1, 2 * t.mr + 3, 29})
    ns = sorted({0, 1, 3, t.w - 1, t.w, t.w + 1, t.nr - 1, t.nr, t.nr + 1, 2 * t.nr + 5})
    ks = sorted({0, 1, 2, 13})
    for m, n, k in itertools.product(ms, ns, ks):
        yield 1, m, n, k
    for k in (t.kc - 1, t.kc, t.kc + 1, 2 * t.kc + 7):
        yield 1, t.mr + 3, t.nr + 5, k
    yield 0, 4, 5, 6
    yield 3, 7, t.nr + 3, 11
    yield 3, 1, 1, 1
    yield 2, 0, 3, 2
    yield 2, 3, 2, 0


def _run(fn: Callable[..., None], element: str, shape: tuple[int, int, int, int],
         ta: int, tb: int, rng: np.random.Generator) -> None:
    batch, m, n, k = shape
    dtype = DTYPES[element]
    a = rng.uniform(-1, 1, (batch, m, k)).astype(dtype)
    b = rng.uniform(-1, 1, (batch, k, n)).astype(dtype)
    a_stored = np.ascontiguousarray(np.swapaxes(a, 1, 2) if ta else a)
    b_stored = np.ascontiguousarray(np.swapaxes(b, 1, 2) if tb else b)
    c_buffer = np.full(batch * m * n + 2 * GUARD, np.nan, dtype)
    c_buffer[:GUARD] = c_buffer[-GUARD:] = 7.0
    c_view = c_buffer[GUARD:GUARD + batch * m * n]
    (a_at, a_keep), (b_at, b_keep) = _fenced(a_stored), _fenced(b_stored)
    fn(a_at, b_at, c_view.ctypes.data, batch, m, n, k, ta, tb)
    del a_keep, b_keep
    c = c_view.reshape(batch, m, n)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    want = np.matmul(a64, b64)
    scale = np.matmul(np.abs(a64), np.abs(b64))
    what = f"{element} batch={batch} m={m} n={n} k={k} trans_a={ta} trans_b={tb}"
    assert np.all(c_buffer[:GUARD] == 7.0) and np.all(c_buffer[-GUARD:] == 7.0), \
        f"{what}: wrote outside C"
    assert np.all(np.isfinite(c)), f"{what}: left elements of C unwritten"
    error = np.abs(c.astype(np.float64) - want)
    assert np.all(error <= RTOL[element] * scale + np.finfo(dtype).tiny), \
        f"{what}: max error {error.max()} (scale {scale.max()})"


@pytest.mark.parametrize("vector_bits", WIDTHS)
@pytest.mark.parametrize("element", ["f32", "f64"])
def test_matches_numpy(element: str, vector_bits: int) -> None:
    _, fn = _compiled(element, vector_bits)
    rng = np.random.default_rng(vector_bits + len(element))
    for shape in _shapes(element, vector_bits):
        for ta, tb in itertools.product((0, 1), repeat=2):
            _run(fn, element, shape, ta, tb, rng)


@pytest.mark.parametrize("vector_bits", WIDTHS)
@pytest.mark.parametrize("element", ["f32", "f64"])
def test_matrix_vector(element: str, vector_bits: int) -> None:
    """Products with n = 1 or m = 1 (their own path: dot products along contiguous rows,
    or multiply-adds of contiguous columns) around the tile rows, the column block of
    4 vectors and the vector width in k, batched too."""
    _, fn = _compiled(element, vector_bits)
    rng = np.random.default_rng(23 + vector_bits)
    t = tiling(element, vector_bits)
    lengths = sorted({1, 2, t.mr - 1, t.mr, t.mr + 1, 4 * t.w - 1, 4 * t.w, 4 * t.w + 1,
                      9 * t.w + 3})
    ks = (0, t.w - 1, t.w, t.w + 1, 3 * t.w + 5)
    for length, k in itertools.product(lengths, ks):
        for shape in ((1, length, 1, k), (1, 1, length, k), (2, length, 1, k)):
            for ta, tb in itertools.product((0, 1), repeat=2):
                _run(fn, element, shape, ta, tb, rng)


@pytest.mark.parametrize("vector_bits", [128, 512])
@pytest.mark.parametrize("element", ["f32", "f64"])
def test_baseline_cpu(element: str, vector_bits: int) -> None:
    """Code for the architecture's baseline CPU, as a portable export builds it: right
    with its own width and with vectors wider than its registers (split by LLVM)."""
    _, fn = _compiled(element, vector_bits, baseline=True)
    rng = np.random.default_rng(17)
    t = tiling(element, vector_bits)
    for shape in [(1, 0, 3, 2), (2, t.mr + 1, t.nr + 3, t.kc + 2), (1, 9, t.w - 1, 7),
                  (1, 9, 1, 2 * t.w + 3), (1, 1, 9, 2 * t.w + 3)]:
        for ta, tb in itertools.product((0, 1), repeat=2):
            _run(fn, element, shape, ta, tb, rng)


@pytest.mark.parametrize("element", ["f32", "f64"])
def test_large_product(element: str) -> None:
    """The MLP layer's shape, several k blocks and panels, at the host's width."""
    _, fn = _compiled(element, host_vector_bits())
    rng = np.random.default_rng(11)
    for ta, tb in itertools.product((0, 1), repeat=2):
        _run(fn, element, (1, 256, 256, 784), ta, tb, rng)


@pytest.mark.parametrize("element", ["f32", "f64"])
def test_calls_nothing(element: str) -> None:
    """Internal, and after LLVM's optimisations the code calls no function (no BLAS, and
    no memcpy/memset that idiom recognition could have made of a loop)."""
    module = _module(element, host_vector_bits())
    assert module.get_global(f"pullback_matmul_{element}").linkage == "internal"
    tm = jit.host_target_machine()
    ref = jit.parse(module, tm)
    jit.optimize(ref, tm)
    declared = [f.name for f in ref.functions if f.is_declaration]
    assert all(name.startswith("llvm.") for name in declared), declared
    if tm.triple.startswith("x86_64"):
        asm = tm.emit_assembly(ref)
        calls = [line for line in asm.splitlines() if line.split()[:1] in (["call"], ["callq"])]
        assert not calls, calls


def test_vector_bits_for() -> None:
    assert vector_bits_for(["sse2", "avx", "avx2", "avx512f"]) == 512
    assert vector_bits_for(["sse2", "avx", "avx2", "fma"]) == 256
    assert vector_bits_for(["sse2"]) == 128
    assert vector_bits_for([]) == 128


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="'f32', 'f64'"):
        tiling("f16", 256)
    with pytest.raises(ValueError, match="128, 256 or 512"):
        tiling("f32", 384)
    with pytest.raises(ValueError, match="no declared pullback_matmul_f32"):
        define_own_matmul(ir.Module(), "f32")
    with pytest.raises(ValueError, match="'blas', 'own'"):
        compile_function(ModuleOp([]), "f", gemm="mkl")


def _swap(x: SSAValue) -> SSAValue:
    r = len(A.shape_of(x))
    return A.TransposeOp(x, [*range(r - 2), r - 1, r - 2]).result


def test_compile_function_own_gemm() -> None:
    """`compile_function(..., gemm="own")`: products through the generated code, no BLAS."""
    cases = [((5, 7), (7, 9), False, False), ((7, 5), (7, 9), True, False),
             ((5, 7), (9, 7), False, True), ((2, 7, 5), (2, 9, 7), True, True)]
    for el, dtype in ((f32, np.float32), (f64, np.float64)):
        types = [TensorType(el, list(s)) for a, b, _, _ in cases for s in (a, b)]
        fn = func.FuncOp("f", (types, []))
        with ImplicitBuilder(fn.body) as args:
            outs = [A.MatmulOp(_swap(args[2 * i]) if ta else args[2 * i],
                               _swap(args[2 * i + 1]) if tb else args[2 * i + 1]).result
                    for i, (_, _, ta, tb) in enumerate(cases)]
            func.ReturnOp(*outs)
        fn.function_type = FunctionType.from_lists(types, [o.type for o in outs])
        exe = compile_function(ModuleOp([fn]), "f", gemm="own")
        assert not any("gemm" in s for s in exe.symbols), exe.symbols
        rng = np.random.default_rng(5)
        inputs = [rng.uniform(-1, 1, s).astype(dtype) for a, b, _, _ in cases for s in (a, b)]
        got = exe.run(inputs)
        for i, (_, _, ta, tb) in enumerate(cases):
            a, b = inputs[2 * i], inputs[2 * i + 1]
            want = np.matmul(np.swapaxes(a, -1, -2) if ta else a,
                             np.swapaxes(b, -1, -2) if tb else b)
            np.testing.assert_allclose(got[i], want, rtol=RTOL[str(el)], atol=RTOL[str(el)] * 10)
