"""pullback: a differentiable array compiler for Python.

Write functions with numpy-style array code (the DSL below); `pb.gradient` and
friends trace them into MLIR, differentiate the IR, and run native code.
"""

from pullback import optimisers
from pullback.api import WithGradient, gradient, pullback, withgradient
from pullback.array import Array, array
from pullback.compiled import Compiled, compile
from pullback.devices import device
from pullback.disk_compile_cache import set_disk_cache
from pullback.dsl import *  # noqa: F403
from pullback.dsl import __all__ as _dsl_all
from pullback.jacobians import (
    WithJacobian,
    diaghessian,
    hessian,
    hessian_reverse,
    jacobian,
    withjacobian,
)
from pullback.library_export import export
from pullback.params import Grads, IdDict, Params, copyto
from pullback.pipeline import cache_info, clear_caches, set_cache_limit

__all__ = [
    *_dsl_all, "Array", "Compiled", "Grads", "IdDict", "Params", "WithGradient", "array",
    "cache_info", "clear_caches", "compile", "copyto", "device", "export", "gradient",
    "optimisers",
    "pullback", "set_cache_limit", "set_disk_cache",
    "withgradient",
    "WithJacobian", "diaghessian", "hessian", "hessian_reverse", "jacobian", "withjacobian",
]
__version__ = "0.1.0"
