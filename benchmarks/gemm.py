"""Matrix products: pullback's generated GEMM against BLAS and numpy (`python benchmarks/gemm.py`).

Times `pullback_matmul_<T>` as the generated code defines it (`gemm.py`, no calls)
and as the in-process JIT defines it (`blas.py`, scipy's BLAS), both compiled the
same way and called through ctypes, and numpy's `matmul`. The table gives the
generated GEMM's speed as a fraction of the others (time of the other / own time;
above 1 means the generated code is faster): numpy and BLAS pinned to one thread
for a like-for-like column, and BLAS with its default threads.
"""

from __future__ import annotations

import argparse
import ctypes
import time
from collections.abc import Callable

import numpy as np
from llvmlite import ir
from threadpoolctl import threadpool_limits

from pullback.compiler.backends.llvm import blas, gemm, jit

_PTR = ir.PointerType()
_I64 = ir.IntType(64)
_SIGNATURE = ir.FunctionType(ir.VoidType(), [_PTR] * 3 + [_I64] * 6)
_CALL = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 3 + [ctypes.c_int64] * 6))
# (batch, m, n, k): the MLP's layer, a small square, a tall skinny product, GMM's batch
SHAPES = [(1, 256, 256, 784), (1, 64, 64, 64), (1, 1000, 10, 10), (25, 1000, 10, 10)]


def compiled_matmul(element: str, own: bool) -> tuple[object, Callable[..., None]]:
    """`pullback_matmul_<element>` JIT-compiled alone; keep the engine (first item) alive."""
    module = ir.Module()
    fn = ir.Function(module, _SIGNATURE, name=f"pullback_matmul_{element}")
    entry = ir.Function(module, _SIGNATURE, name="entry")
    builder = ir.IRBuilder(entry.append_basic_block())
    builder.call(fn, list(entry.args))
    builder.ret_void()
    (gemm.define_own_matmul if own else blas.define_matmul)(module, element)
    tm = jit.host_target_machine()
    ref = jit.parse(module, tm)
    jit.optimize(ref, tm)
    engine = jit.jit(ref, tm)
    return engine, _CALL(engine.get_function_address("entry"))


def seconds(run: Callable[[], object], budget: float) -> float:
    """Best time of one call of `run`, over repeated batches for about `budget` seconds."""
    run()
    start = time.perf_counter()
    run()
    once = max(time.perf_counter() - start, 1e-7)
    calls = max(1, int(0.02 / once))
    best = float("inf")
    end = time.perf_counter() + budget
    while time.perf_counter() < end or best == float("inf"):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def measure(dtype: type, shape: tuple[int, int, int, int], budget: float) -> dict[str, float]:
    """Seconds per product for each implementation at `shape` = (batch, m, n, k)."""
    element = "f32" if dtype is np.float32 else "f64"
    batch, m, n, k = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((batch, m, k)).astype(dtype)
    b = rng.standard_normal((batch, k, n)).astype(dtype)
    c = np.empty((batch, m, n), dtype)
    own_engine, own = compiled_matmul(element, own=True)
    blas_engine, blas_fn = compiled_matmul(element, own=False)
    args = (a.ctypes.data, b.ctypes.data, c.ctypes.data, batch, m, n, k, 0, 0)
    out = np.empty_like(c)
    times = {"own": seconds(lambda: own(*args), budget)}
    np.testing.assert_allclose(c, np.matmul(a, b), rtol=1e-3, atol=1e-3 * np.sqrt(k))
    with threadpool_limits(limits=1):
        times["blas 1t"] = seconds(lambda: blas_fn(*args), budget)
        times["numpy 1t"] = seconds(lambda: np.matmul(a, b, out=out), budget)
    times["blas"] = seconds(lambda: blas_fn(*args), budget)
    del own_engine, blas_engine
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.5, help="seconds of timing per cell")
    budget = parser.parse_args().budget
    print(f"vector width {gemm.host_vector_bits()} bits; ratio = other time / own time")
    columns = ("blas 1t", "numpy 1t", "blas")
    header = (f"{'dtype':7} {'batch x m x n x k':22} {'own GFLOP/s':>11} "
              + " ".join(f"{c:>8}" for c in columns))
    print(header)
    print("-" * len(header))
    for dtype in (np.float32, np.float64):
        for shape in SHAPES:
            t = measure(dtype, shape, budget)
            batch, m, n, k = shape
            gflops = 2 * batch * m * n * k / t["own"] / 1e9
            ratios = " ".join(f"{t[c] / t['own']:8.2f}" for c in columns)
            label = f"{batch} x {m}x{n}x{k}"
            print(f"{np.dtype(dtype).name:7} {label:22} {gflops:11.1f} {ratios}")


if __name__ == "__main__":
    main()
