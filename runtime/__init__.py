"""pullback: a differentiable array compiler for Python.

Write functions with numpy-style array code (the DSL below); `pb.gradient` and
friends trace them into MLIR, differentiate the IR, and run native code.
"""

from pullback.api import WithGradient, gradient, pullback, withgradient
from pullback.compiled import Compiled, compile
from pullback.devices import device
from pullback.dsl import *  # noqa: F403
from pullback.dsl import __all__ as _dsl_all
from pullback.pipeline import cache_info, clear_caches

__all__ = [
    *_dsl_all, "Compiled", "WithGradient", "cache_info", "clear_caches", "compile", "device",
    "gradient", "pullback", "withgradient",
]
__version__ = "0.1.0"
