"""Stage texts that show each op's source location, made by replaying the pipeline.

Traced ops carry the user's `file:line:column`; printed with locations, every op ends
with `loc("model.py":12:9)`, and the text parses back with them. The stage texts a
compiled program keeps are printed without (printing is a large part of compiling, so
it is not done twice); the located ones are made only when asked for, by running the
program's pipeline text again on its traced module, which gives the same stages
(the pipeline is replayable, as `pullback opt` shows).
"""

from __future__ import annotations

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from pullback.compiler.ir_dump import module_text
from pullback.compiler.pass_runner import PassHooks, run_pipeline

TRACE_STAGE = "trace"
"""The key of the traced module's own text, the stage before the first pass."""


def located_stages(traced: ModuleOp, pipeline: str) -> dict[str, str]:
    """The text of `traced` and of the module after each pass of `pipeline` (run on a
    copy), keyed like a compiled program's stages, printed with locations."""
    module = traced.clone()
    stages = {TRACE_STAGE: module_text(module, locations=True)}

    def after(key: str, p: ModulePass, mod: ModuleOp) -> None:
        stages[key] = module_text(mod, locations=True)

    run_pipeline(pipeline, module, PassHooks(after=after), taken=(TRACE_STAGE,))
    return stages
