"""Matrix products: pullback's generated GEMM against BLAS and numpy (`python benchmarks/gemm.py`).

Times `pullback_matmul_<T>` as the generated code defines it (`gemm.py`, no calls)
and through scipy's BLAS (`blas.py`), both compiled the same way and called through
ctypes, and numpy's `matmul`. The table gives the generated GEMM's speed as a
fraction of the others (time of the other / own time; above 1 means the generated
code is faster): numpy and BLAS pinned to one thread for a like-for-like column, and
BLAS with its default threads. `chosen` is what in-process programs use for that
product (`matmul_choice`). The shapes are the products of the benchmark workloads
(`benchmarks/run.py`), with their transposes, and a few squares. `--load` runs a
busy process beside the timings, as a user's other work would.
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from llvmlite import ir
from threadpoolctl import threadpool_limits

from pullback.compiler.backends.llvm import blas, gemm, jit
from pullback.compiler.backends.llvm.matmul_choice import uses_own_gemm

_PTR = ir.PointerType()
_I64 = ir.IntType(64)
_SIGNATURE = ir.FunctionType(ir.VoidType(), [_PTR] * 3 + [_I64] * 6)
_CALL = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 3 + [ctypes.c_int64] * 6))
# (dtype, batch, m, n, k, trans_a, trans_b): C = op(A) @ op(B), op(A) m x k, op(B) k x n
SHAPES = [
    # mlp and train (float32): forward layers, then the gradient's products
    (np.float32, 1, 256, 256, 784, 0, 0), (np.float32, 1, 256, 256, 256, 0, 0),
    (np.float32, 1, 256, 10, 256, 0, 0), (np.float32, 1, 256, 256, 10, 0, 1),
    (np.float32, 1, 256, 256, 256, 0, 1), (np.float32, 1, 256, 256, 256, 1, 0),
    (np.float32, 1, 784, 256, 256, 1, 0), (np.float32, 1, 256, 10, 256, 1, 0),
    # gmm: batches of 25 products
    (np.float64, 25, 1000, 10, 10, 0, 0), (np.float64, 25, 1000, 10, 10, 0, 1),
    (np.float64, 25, 10, 10, 1000, 1, 0),
    # jacobian and hessian
    (np.float64, 1, 1000, 1, 200, 0, 0), (np.float64, 1, 200, 1000, 1000, 1, 0),
    (np.float64, 1, 300, 1, 100, 0, 0), (np.float64, 1, 300, 100, 100, 0, 0),
    (np.float64, 1, 100, 100, 300, 1, 0),
    # squares
    (np.float64, 1, 64, 64, 64, 0, 0), (np.float64, 1, 512, 512, 512, 0, 0),
    (np.float64, 1, 1024, 1024, 1024, 0, 0),
]


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


def measure(dtype: type, shape: tuple[int, ...], budget: float) -> dict[str, float]:
    """Seconds per product for each implementation at
    `shape` = (batch, m, n, k, trans_a, trans_b)."""
    element = "f32" if dtype is np.float32 else "f64"
    batch, m, n, k, trans_a, trans_b = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((batch, k, m) if trans_a else (batch, m, k)).astype(dtype)
    b = rng.standard_normal((batch, n, k) if trans_b else (batch, k, n)).astype(dtype)
    op_a = np.swapaxes(a, 1, 2) if trans_a else a
    op_b = np.swapaxes(b, 1, 2) if trans_b else b
    c = np.empty((batch, m, n), dtype)
    own_engine, own = compiled_matmul(element, own=True)
    blas_engine, blas_fn = compiled_matmul(element, own=False)
    args = (a.ctypes.data, b.ctypes.data, c.ctypes.data, batch, m, n, k, trans_a, trans_b)
    out = np.empty_like(c)
    times = {"own": seconds(lambda: own(*args), budget)}
    np.testing.assert_allclose(c, np.matmul(op_a, op_b), rtol=1e-3, atol=1e-3 * np.sqrt(k))
    with threadpool_limits(limits=1):
        times["blas 1t"] = seconds(lambda: blas_fn(*args), budget)
        times["numpy 1t"] = seconds(lambda: np.matmul(op_a, op_b, out=out), budget)
    times["blas"] = seconds(lambda: blas_fn(*args), budget)
    del own_engine, blas_engine
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.5, help="seconds of timing per cell")
    parser.add_argument("--load", action="store_true",
                        help="run one busy process beside the timings")
    args = parser.parse_args()
    busy = (subprocess.Popen([sys.executable, "-c", "while True: pass"])
            if args.load else None)
    try:
        _table(args.budget)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def _table(budget: float) -> None:
    print(f"vector width {gemm.host_vector_bits()} bits; ratio = other time / own time")
    columns = ("blas 1t", "numpy 1t", "blas")
    header = (f"{'dtype':7} {'batch x m x n x k':22} {'own GFLOP/s':>11} "
              + " ".join(f"{c:>8}" for c in columns) + "  chosen")
    print(header)
    print("-" * len(header))
    for dtype, *shape in SHAPES:
        t = measure(dtype, tuple(shape), budget)
        batch, m, n, k, trans_a, trans_b = shape
        gflops = 2 * batch * m * n * k / t["own"] / 1e9
        ratios = " ".join(f"{t[c] / t['own']:8.2f}" for c in columns)
        flags = "".join(f" {name}" for name, on in (("A^T", trans_a), ("B^T", trans_b)) if on)
        label = f"{batch} x {m}x{n}x{k}{flags}"
        chosen = "own" if uses_own_gemm(m, n, k) else "blas"
        print(f"{np.dtype(dtype).name:7} {label:22} {gflops:11.1f} {ratios}  {chosen}",
              flush=True)


if __name__ == "__main__":
    main()
