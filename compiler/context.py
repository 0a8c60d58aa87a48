"""The xDSL context with every dialect pullback's IR may contain."""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects.arith import Arith
from xdsl.dialects.builtin import Builtin
from xdsl.dialects.cf import Cf
from xdsl.dialects.func import Func
from xdsl.dialects.llvm import LLVM
from xdsl.dialects.math import Math
from xdsl.dialects.memref import MemRef
from xdsl.dialects.ptr import Ptr
from xdsl.dialects.scf import Scf

from pullback.compiler.dialects.ad import Ad
from pullback.compiler.dialects.array import Array
from pullback.compiler.dialects.extension_ops import EXTENSION_OPS
from pullback.compiler.dialects.kernel import KernelDialect


def make_context() -> Context:
    """A fresh context with builtin, func, arith, math, scf, cf, memref, ptr, llvm, array,
    ad, kernel, and the ops registered from outside pullback (`register_op`)."""
    ctx = Context(allow_unregistered=False)
    for dialect in (Builtin, Func, Arith, Math, Scf, Cf, MemRef, Ptr, LLVM, Array, Ad,
                    KernelDialect):
        ctx.load_dialect(dialect)
    for entry in list(EXTENSION_OPS.values()):
        ctx.load_op(entry.cls)
    return ctx
