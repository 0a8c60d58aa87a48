"""Matrix products on the CPU: the kernel-level `pullback_matmul_<T>` through BLAS.

In-process programs use it for large products only (`matmul_choice`: where a second
core pays for the wait on BLAS's threads); smaller ones run the generated GEMM.
The routines are taken from `scipy.linalg.cython_blas` capsules (Fortran
`dgemm`/`sgemm`, every argument by pointer) and bound to JIT symbols. That extension
module is loaded on its own, when a program first needs a matrix product: importing
`scipy.linalg` whole costs about 0.3 s, most of a first call served by the disk cache.

Layout: buffers are row-major, BLAS is column-major. A row-major (m x n) matrix C
is the column-major matrix C^T, so C = op(A) op(B) is computed as
C^T = op(B)^T op(A)^T: call gemm with B first and A second, m and n swapped. A
transpose flag on an operand (the array stage folded a transpose of its last two
dimensions) becomes 'T' for that operand: `trans_b` -> transa of gemm with
ldb = k, otherwise 'N' with ldb = n; `trans_a` -> transb of gemm with lda = m,
otherwise 'N' with lda = k. Batched products loop over the batch, one gemm each.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

from llvmlite import binding, ir

_GEMM = {"f64": ("dgemm", ir.DoubleType()), "f32": ("sgemm", ir.FloatType())}
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_I8 = ir.IntType(8)
_PTR = ir.PointerType()
_bound: set[str] = set()


_MODULE = "scipy.linalg.cython_blas"


@functools.cache
def _cython_blas() -> ModuleType:
    """scipy's `cython_blas` extension module, without importing all of `scipy.linalg`
    (the usual import when that is loaded already, or the direct load fails)."""
    if "scipy.linalg" not in sys.modules:
        try:
            spec = importlib.util.find_spec("scipy.linalg")
            folder = (spec.submodule_search_locations or [None])[0] if spec else None
            suffixes = importlib.machinery.EXTENSION_SUFFIXES
            for name in sorted(os.listdir(folder)) if folder else []:
                if any(name == "cython_blas" + suffix for suffix in suffixes):
                    path = os.path.join(folder, name)
                    loader = importlib.machinery.ExtensionFileLoader(_MODULE, path)
                    found = importlib.util.spec_from_file_location(_MODULE, path, loader=loader)
                    if found is not None:
                        module = importlib.util.module_from_spec(found)
                        loader.exec_module(module)
                        return module
        except (ImportError, OSError):
            pass
    return importlib.import_module(_MODULE)


def _capsule_pointer(name: str) -> int:
    capsule = _cython_blas().__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    address = get_pointer(capsule, get_name(capsule))
    if not address:
        raise RuntimeError(f"could not read the address of BLAS {name} from scipy")
    return int(address)


def bind_blas_symbol(routine: str) -> str:
    """Make `pullback_<routine>` resolvable by the JIT; returns the symbol name."""
    symbol = f"pullback_{routine}"
    if symbol not in _bound:
        binding.add_symbol(symbol, _capsule_pointer(routine))
        _bound.add(symbol)
    return symbol


def define_matmul(module: ir.Module, element: str, *, symbol: str | None = None) -> None:
    """Give the declared `pullback_matmul_<element>` in `module` (or the declared
    function `symbol`, of the same signature) a body calling gemm."""
    routine, scalar = _GEMM[element]
    name = symbol or f"pullback_matmul_{element}"
    fn = module.globals.get(name)
    if not isinstance(fn, ir.Function) or not fn.is_declaration:
        raise ValueError(f"the module has no declared {name} to define")
    gemm = ir.Function(module, ir.FunctionType(ir.VoidType(), [_PTR] * 13),
                       name=bind_blas_symbol(routine))
    fn.linkage = "internal"
    a, b, c, batch, m, n, k, ta, tb = fn.args
    entry = fn.append_basic_block("entry")
    loop = fn.append_basic_block("loop")
    done = fn.append_basic_block("done")
    bld = ir.IRBuilder(entry)

    def slot(t: ir.Type, value: ir.Value) -> ir.Value:
        p = bld.alloca(t)
        bld.store(value, p)
        return p

    def at_least_one(v: ir.Value) -> ir.Value:
        return bld.select(bld.icmp_signed("<", v, ir.Constant(_I64, 1)), ir.Constant(_I64, 1), v)

    def int_slot(v: ir.Value) -> ir.Value:
        return slot(_I32, bld.trunc(v, _I32))

    def flag(t: ir.Value) -> ir.Value:
        is_t = bld.icmp_signed("!=", t, ir.Constant(_I64, 0))
        return slot(_I8, bld.select(is_t, ir.Constant(_I8, ord("T")), ir.Constant(_I8, ord("N"))))

    ld_a = at_least_one(bld.select(bld.icmp_signed("!=", ta, ir.Constant(_I64, 0)), m, k))
    ld_b = at_least_one(bld.select(bld.icmp_signed("!=", tb, ir.Constant(_I64, 0)), k, n))
    args_fixed = dict(
        transa=flag(tb), transb=flag(ta), m=int_slot(n), n=int_slot(m), k=int_slot(k),
        alpha=slot(scalar, ir.Constant(scalar, 1.0)), lda=int_slot(ld_b),
        ldb=int_slot(ld_a), beta=slot(scalar, ir.Constant(scalar, 0.0)),
        ldc=int_slot(at_least_one(n)),
    )
    size_a, size_b, size_c = bld.mul(m, k), bld.mul(k, n), bld.mul(m, n)
    bld.cbranch(bld.icmp_signed(">", batch, ir.Constant(_I64, 0)), loop, done)
    bld = ir.IRBuilder(loop)
    p = bld.phi(_I64)
    p.add_incoming(ir.Constant(_I64, 0), entry)
    pa = bld.gep(a, [bld.mul(p, size_a)], source_etype=scalar)
    pb = bld.gep(b, [bld.mul(p, size_b)], source_etype=scalar)
    pc = bld.gep(c, [bld.mul(p, size_c)], source_etype=scalar)
    f = args_fixed
    bld.call(gemm, [f["transa"], f["transb"], f["m"], f["n"], f["k"], f["alpha"], pb,
                    f["lda"], pa, f["ldb"], f["beta"], pc, f["ldc"]])
    nxt = bld.add(p, ir.Constant(_I64, 1))
    p.add_incoming(nxt, loop)
    bld.cbranch(bld.icmp_signed("<", nxt, batch), loop, done)
    ir.IRBuilder(done).ret_void()
