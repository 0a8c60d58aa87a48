"""Forward mode: `jvp` adds `@f_jvp(args..., tangents...) -> (results..., tangents...)`.

One sweep in program order clones each primal op and, when an operand carries a
tangent, calls the op's JVP rule right after it. Every float argument takes a
tangent (`pullback.tangents` lists their indices); every float result gets one,
`array.full` zeros where it does not depend on any tangent.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, SSAValue
from xdsl.passes import ModulePass

from pullback.compiler.autodiff.emit import Emitter
from pullback.compiler.autodiff.forward_region import expand_forward_regions
from pullback.compiler.autodiff.functions import (
    add_function,
    body_of,
    clone_into,
    derivative_attrs,
    is_float,
    selected_functions,
)
from pullback.compiler.autodiff.rules import jvp_rule


def build_jvp(module: ModuleOp, f: func.FuncOp) -> func.FuncOp:
    """Add `@<f>_jvp` next to `f` and return it."""
    expand_forward_regions(f)
    block, ops, ret = body_of(f)
    takes_tangent = [i for i, a in enumerate(block.args) if is_float(a)]
    n = len(block.args)
    new = Block(arg_types=[a.type for a in block.args]
                + [block.args[i].type for i in takes_tangent])
    e = Emitter(new)
    mapping: dict[SSAValue, SSAValue] = dict(zip(block.args, new.args[:n], strict=True))
    tangents: dict[SSAValue, SSAValue] = {
        new.args[i]: new.args[n + k] for k, i in enumerate(takes_tangent)
    }

    for op in ops:
        clone = clone_into(new, op, mapping)
        if any(v in tangents for v in clone.operands):
            with e.at(clone.location):
                t = jvp_rule(clone)(e, clone, tuple(tangents.get(v) for v in clone.operands))
            if t is not None:
                tangents[clone.results[0]] = t

    results = [mapping.get(r, r) for r in ret.arguments]
    result_tangents = [
        tangents[r] if r in tangents else e.zeros(r) for r in results if is_float(r)
    ]
    attrs = derivative_attrs("jvp", tangents=takes_tangent)
    return add_function(module, f, f.sym_name.data + "_jvp", new,
                        results + result_tangents, attrs)


@dataclass(frozen=True)
class JvpPass(ModulePass):
    """Forward-mode AD of `func` (default: every function not itself a derivative)."""

    name = "jvp"
    func: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for f in selected_functions(op, self.func):
            build_jvp(op, f)
