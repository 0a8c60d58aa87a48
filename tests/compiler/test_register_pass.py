"""`pullback.compiler.register_pass` and `pb.compile(..., passes=...)`: a pass of one's
own, registered, inserted into a mode's pipeline, checked against numpy; the caches
keep programs with and without it apart."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

import pullback as pb
from pullback.compiler import register_pass
from pullback.compiler.dialects.array import AddOp, FullOp, MulOp
from pullback.compiler.passes import pass_names


@dataclass(frozen=True)
class DoublesAsAdds(ModulePass):
    """`array.mul x, (array.full 2)` (either side) becomes `array.add x, x`."""

    name = "test-doubles-as-adds"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for mul in [o for o in op.walk() if isinstance(o, MulOp)]:
            for x, two in ((mul.lhs, mul.rhs), (mul.rhs, mul.lhs)):
                if isinstance(two.owner, FullOp) and two.owner.scalar == 2:
                    Rewriter.replace_op(mul, AddOp(x, x))
                    break


if DoublesAsAdds.name not in pass_names():
    register_pass(DoublesAsAdds.name, DoublesAsAdds)

INSERT = {"after": {"simplify": [DoublesAsAdds.name]}}
X = np.linspace(-1.0, 2.0, 5)


def f(x):
    return pb.sum(pb.sin(x) * 2.0)


def test_an_inserted_pass_runs_where_asked_and_gives_the_same_numbers():
    c = pb.compile(f, X, mode="withgradient", passes=INSERT)
    assert f",simplify,{DoublesAsAdds.name},cse," in c.pipeline
    keys = list(c.stages)
    assert keys[keys.index("simplify") + 1] == DoublesAsAdds.name
    assert "array.mul" in c.ir("simplify") and "array.mul" not in c.ir(DoublesAsAdds.name)
    value, (grad,) = c(X)
    np.testing.assert_allclose(value, np.sum(2 * np.sin(X)), rtol=1e-14)
    np.testing.assert_allclose(grad, 2 * np.cos(X), rtol=1e-14)


def test_before_inserts_ahead_of_every_run_of_the_anchor():
    c = pb.compile(f, X, mode="hessian_reverse", passes={"before": {"autodiff": ["cse"]}})
    assert c.pipeline.startswith("cse,autodiff{")
    assert c.pipeline.count("cse,autodiff{") == 2
    np.testing.assert_allclose(c(X), np.diag(-2 * np.sin(X)), atol=1e-14)


def test_the_compile_cache_keeps_programs_with_and_without_the_pass_apart():
    plain = pb.compile(f, X, mode="value")
    rewritten = pb.compile(f, X, mode="value", passes=INSERT)
    assert DoublesAsAdds.name not in plain.pipeline and "array.mul" in plain.ir("dce")
    assert "array.mul" not in rewritten.ir("dce")
    again = pb.compile(f, X, mode="value")
    assert "array.mul" in again.ir("dce")


def test_disk_cache_stores_builtin_insertions_apart_and_no_user_pass(disk_cache_dir):
    pb.clear_caches()
    before = pb.cache_info().disk_writes
    pb.compile(f, X, mode="value")
    pb.compile(f, X, mode="value", passes={"after": {"dce": ["canonicalize"]}})
    assert pb.cache_info().disk_writes == before + 2
    pb.compile(f, X, mode="value", passes=INSERT)  # its code is outside pullback's key
    assert pb.cache_info().disk_writes == before + 2


def test_register_pass_refuses_a_taken_name_or_a_class_that_is_not_a_pass():
    with pytest.raises(ValueError, match="a pass named 'simplify' is already registered"):
        register_pass("simplify", DoublesAsAdds)
    with pytest.raises(ValueError, match="already registered"):
        register_pass(DoublesAsAdds.name, DoublesAsAdds)
    with pytest.raises(TypeError, match="needs a subclass of xdsl.passes.ModulePass"):
        register_pass("not-a-pass", object)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="the class's `name` attribute must be 'other-name'"):
        register_pass("other-name", DoublesAsAdds)
    assert "not-a-pass" not in pass_names() and "other-name" not in pass_names()


@pytest.mark.parametrize("passes, message", [
    ({"after": {"no-such-pass": ["cse"]}}, "anchor 'no-such-pass' is not a registered pass"),
    ({"after": {"simplify": ["no-such-pass"]}}, "inserted pass 'no-such-pass' is not a registered"),
    ({"after": {"jvp": ["cse"]}}, "anchor 'jvp' is not in this pipeline; its passes: autodiff"),
    ({"around": {"simplify": ["cse"]}}, "keys 'after' and/or 'before'"),
    ({"after": {"simplify": "cse"}}, "must be a list of pass texts"),
])
def test_passes_option_refuses_what_it_cannot_use(passes, message):
    with pytest.raises(ValueError, match=message):
        pb.compile(f, X, mode="gradient", passes=passes)


@dataclass(frozen=True)
class CountsKernels(ModulePass):
    """Kernel level: records how many functions the module holds each time it runs (a
    lowering pass that leaves the code as it is)."""

    name = "test-counts-kernels"
    runs = []  # noqa: RUF012 - shared record of the runs

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        self.runs.append(len(list(op.body.block.ops)))


if CountsKernels.name not in pass_names():
    register_pass(CountsKernels.name, CountsKernels)


def test_an_exported_library_is_lowered_with_the_inserted_passes(tmp_path):
    """`pb.export` runs the entry's inserted passes, at the array level and in the CPU
    lowering, as `pb.compile` does; the library's numbers are numpy's."""
    lowering = {"after": {"simplify": [DoublesAsAdds.name],
                          "memory-plan": [CountsKernels.name]}}
    c = pb.compile(f, X, mode="withgradient", passes=lowering)
    before = len(CountsKernels.runs)
    lib = pb.export(tmp_path, "inserted", {"vg": c}).load()
    assert len(CountsKernels.runs) == before + 1
    value, (grad,) = lib.vg(X)
    np.testing.assert_allclose(value, np.sum(2 * np.sin(X)), rtol=1e-14)
    np.testing.assert_allclose(grad, 2 * np.cos(X), rtol=1e-14)
