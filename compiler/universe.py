"""pullback's dialects and passes for `xdsl-opt` (and any tool built on xDSL's
`Multiverse`), found through the `xdsl.universe` entry point in pyproject.toml:
`xdsl-opt traced.mlir -p autodiff,simplify` parses pullback IR and runs its passes.

The passes pullback borrows from xDSL (`canonicalize`, `cse`, `dce`) are left to
xDSL's own universe: a name defined twice makes `xdsl-opt` refuse to start.
Importing this module imports no dialect or pass; each is loaded when asked for.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.ir import Dialect
from xdsl.passes import ModulePass
from xdsl.transforms import get_all_passes as xdsl_passes
from xdsl.universe import Universe

from pullback.compiler.passes import PASSES, get_pass


def _array() -> Dialect:
    from pullback.compiler.dialects.array import Array

    return Array


def _ad() -> Dialect:
    from pullback.compiler.dialects.ad import Ad

    return Ad


def _kernel() -> Dialect:
    from pullback.compiler.dialects.kernel import KernelDialect

    return KernelDialect


def _getter(name: str) -> Callable[[], type[ModulePass]]:
    return lambda: get_pass(name)


def pullback_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    """Each registered pass xDSL does not itself define, by name -> class getter."""
    taken = xdsl_passes()
    return {name: _getter(name) for name in PASSES if name not in taken}


PULLBACK_UNIVERSE = Universe(
    all_dialects={"array": _array, "ad": _ad, "kernel": _kernel},
    all_passes=pullback_passes(),
)
