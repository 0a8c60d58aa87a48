"""Which code computes each matrix product of an in-process program, chosen per call site.

Every `pullback_matmul_<T>` call that lowering emits carries its sizes as constants
(batch, m, n, k). `define_chosen_matmul` reads them: a product with
m * n * k < `OWN_BELOW` runs pullback's own generated GEMM (`gemm.py`:
single-threaded, no calls), a larger one (or one whose sizes are not constants)
scipy's BLAS (`blas.py`). A batched product is judged by one member: the batch is a
loop of separate products.

Why: OpenBLAS runs every product above 64^3 on all its threads. On a machine whose
cores are busy (another process, the user's own threads, pullback's next kernel)
those threads wait to be scheduled, and at every product a spinning thread takes a
core from the others: measured on 2 cores with one other busy process, a
256 x 256 x 256 product took 16 ms instead of 0.3 ms, the MLP gradient 116 ms
(10.5 ms with OpenBLAS held to one thread). Single-threaded, the own GEMM is about
as fast as OpenBLAS on one thread at every size the benchmarks use (0.6-1.7x its
time, 256 x 256 x 784 float32 at 170 GFLOP/s with AVX-512; `benchmarks/gemm.py`), so
below the threshold nothing is lost on an idle machine but what a second core could
add. That gain is at most
half the product's time and the loss under load is 10-20 ms per product, so BLAS's
threads are used only where a product takes tens of milliseconds on one core:
m * n * k >= 2^30 (1024^3; 45 ms in float64 here).

Only the functions the sites use are defined, so a program whose products are all
below the threshold declares no BLAS symbol: loading it (from the disk cache too)
neither loads scipy's BLAS nor starts its threads.
"""

from __future__ import annotations

from llvmlite import ir

from pullback.compiler.backends.llvm import blas
from pullback.compiler.backends.llvm.gemm import define_own_matmul

OWN_BELOW = 2**30
"""Products with m * n * k below this run pullback's own GEMM; larger ones BLAS."""

_SIZES = slice(4, 7)  # (a, b, c, batch, m, n, k, trans_a, trans_b): m, n, k


def uses_own_gemm(m: int, n: int, k: int) -> bool:
    """Whether an (m x k) @ (k x n) product runs pullback's own GEMM."""
    return m * n * k < OWN_BELOW


def _call_sites(module: ir.Module, callee: ir.Function) -> list[ir.CallInstr]:
    return [ins for fn in module.functions for block in fn.blocks
            for ins in block.instructions
            if isinstance(ins, ir.CallInstr) and ins.callee is callee]


def _own(call: ir.CallInstr) -> bool:
    sizes = call.args[_SIZES]
    if not all(isinstance(s, ir.Constant) and isinstance(s.constant, int) for s in sizes):
        return False
    m, n, k = (int(s.constant) for s in sizes)
    return uses_own_gemm(m, n, k)


def define_chosen_matmul(module: ir.Module, element: str) -> None:
    """Give the declared `pullback_matmul_<element>` in `module` a body, choosing per
    call site: below the threshold the own GEMM, otherwise BLAS (the large sites are
    pointed at a second function, `pullback_matmul_<element>_blas`)."""
    fn = module.globals.get(f"pullback_matmul_{element}")
    if not isinstance(fn, ir.Function) or not fn.is_declaration:
        raise ValueError(f"the module has no declared pullback_matmul_{element} to define")
    sites = _call_sites(module, fn)
    large = [call for call in sites if not _own(call)]
    if not large:
        define_own_matmul(module, element)
        return
    if len(large) == len(sites):
        blas.define_matmul(module, element)
        return
    through_blas = ir.Function(module, fn.function_type, name=f"{fn.name}_blas")
    for call in large:
        call.replace_callee(through_blas)
    blas.define_matmul(module, element, symbol=through_blas.name)
    define_own_matmul(module, element)
