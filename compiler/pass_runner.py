"""Running pipeline text on a module, pass by pass, with what happens around each pass.

Every pipeline pullback runs (the runtime's modes, the backends' lowerings) goes
through `run_pipeline`: the text is parsed against the registry and each pass
applied in order, so what a pipeline prints is what it does. Around each pass a
`PassHooks` may record the module's text (stage texts are keyed by `stage_keys`),
time it, or read an analysis the later code needs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from pullback.compiler.context import make_context
from pullback.compiler.passes import parse_pipeline

Hook = Callable[[str, ModulePass, ModuleOp], None]
"""Called with the pass's stage key, the pass and the module."""


@dataclasses.dataclass
class PassHooks:
    """What to do before and after each pass; `timings` gathers seconds per pass name."""

    before: Hook | None = None
    after: Hook | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


def stage_keys(names: Sequence[str], taken: Sequence[str] = ()) -> list[str]:
    """The stage key of each pass of a pipeline: its name, or `name#k` for the k-th run
    (k >= 2) of a pass that runs more than once (counting the keys in `taken`)."""
    seen: dict[str, int] = {}
    for key in taken:
        name = key.partition("#")[0]
        seen[name] = seen.get(name, 0) + 1
    keys = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys


def run_pipeline(text: str, module: ModuleOp, hooks: PassHooks | None = None,
                 ctx: Context | None = None, taken: Sequence[str] = ()) -> list[str]:
    """Apply the passes of pipeline `text` to `module` in order; returns their stage keys
    (`taken`: keys of stages already run on this module, for repeated passes)."""
    passes = parse_pipeline(text).passes if text else ()
    keys = stage_keys([p.name for p in passes], taken)
    ctx = ctx or make_context()
    hooks = hooks or PassHooks()
    for key, p in zip(keys, passes, strict=True):
        if hooks.before is not None:
            hooks.before(key, p, module)
        start = time.perf_counter()
        p.apply(ctx, module)
        hooks.timings[p.name] = hooks.timings.get(p.name, 0.0) + time.perf_counter() - start
        if hooks.after is not None:
            hooks.after(key, p, module)
    return keys
