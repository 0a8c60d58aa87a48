"""Locations through the passes: an op `simplify` makes in place of another takes its
location; kernel-level ops carry the location of the array op they compute, so
`ir(stage, locations=True)` at the loop stages names the user's lines (the plain text
and the cache key do not depend on them), and a kernel-level lowering error names the
user's line.

Expected lines and columns are found in this file's own source (by marker comments),
never read from the IR under test.
"""

import inspect

import numpy as np
import pytest
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import FileLineColLoc, IntAttr, StringAttr
from xdsl.parser import Parser

import pullback as pb
from pullback.compiler.context import make_context
from pullback.compiler.conversion.math_to_llvm import MATH_TO_LLVM
from pullback.compiler.dialects import array as A

X = np.linspace(0.1, 0.9, 5)
W = np.linspace(1.0, 2.0, 5)


def _model(x):
    y = np.sin(x)  # marker: sin
    z = y * W  # marker: mul
    return pb.sum(z)


def _where(fn, marker: str, expression: str) -> FileLineColLoc:
    """The location of `expression` on the line of `fn` that ends with `# marker: ...`."""
    lines, first = inspect.getsourcelines(fn)
    for offset, text in enumerate(lines):
        if text.rstrip().endswith(f"# marker: {marker}"):
            return FileLineColLoc(StringAttr(fn.__code__.co_filename), IntAttr(first + offset),
                                  IntAttr(text.index(expression) + 1))
    raise AssertionError(f"no marker {marker!r} in {fn.__name__}")


def _kernel_stages(compiled) -> list[str]:
    """The stages whose IR is loops over scalars: no array op left, not yet LLVM."""
    return [s for s in compiled.stages
            if "array." not in compiled.ir(s) and "scf." in compiled.ir(s)]


def test_kernel_level_ops_name_the_users_line():
    compiled = pb.compile(_model, X, mode="value")
    stages = _kernel_stages(compiled)
    assert stages
    sin_at, mul_at = _where(_model, "sin", "np.sin(x)"), _where(_model, "mul", "y * W")
    for stage in stages:
        located = compiled.ir(stage, locations=True)
        assert f'loc("{__file__}":{sin_at.line.data}:' in located
        module = Parser(make_context(), located).parse_module()
        sines = [op for op in module.walk() if isinstance(op, math.SinOp)]
        products = [op for op in module.walk() if isinstance(op, arith.MulfOp)]
        assert sines and products
        assert all(op.location == sin_at for op in sines), stage
        assert all(op.location == mul_at for op in products), stage


def test_kernel_text_and_key_do_not_depend_on_locations():
    first = lambda x: pb.sum(np.cos(x) * 0.5813)  # noqa: E731  # marker: first
    second = lambda x: pb.sum(np.cos(x) * 0.5813)  # noqa: E731  # marker: second
    a = pb.compile(first, X, mode="gradient")
    pb.clear_caches()
    b = pb.compile(second, X, mode="gradient")
    assert a is not b
    for stage in _kernel_stages(a):
        assert a.ir(stage) == b.ir(stage)
        assert "loc(" not in a.ir(stage)
        assert a.ir(stage, locations=True) != b.ir(stage, locations=True)
    before = pb.cache_info()
    assert pb.compile(first, X, mode="gradient") is not None
    assert pb.cache_info().hits - before.hits == 1


def test_a_kernel_level_lowering_error_names_the_users_line(monkeypatch):
    """With the LLVM row of `math.sin` taken away, lowering the kernel fails on the
    `math.sin` that `np.sin` became, and names the line of `np.sin`."""
    def uses_sine(x):
        return pb.sum(np.sin(x) * 0.2741)  # marker: sin

    monkeypatch.delitem(MATH_TO_LLVM, math.SinOp)
    at = _where(uses_sine, "sin", "np.sin(x)")
    with pytest.raises(NotImplementedError) as e:
        pb.compile(uses_sine, X, mode="value")
    assert str(e.value).startswith(
        f"{at.filename.data}:{at.line.data}:{at.column.data}: no LLVM lowering rule for "
        "'math.sin'")


def test_ops_simplify_makes_take_the_location_of_the_op_they_replace():
    """`reshape(reshape(x))` becomes one reshape, `0 - x` a negation: each new op is
    where the op it replaces was."""
    def reshaped(x):
        inner = pb.reshape(x, (5, 1))  # marker: inner
        outer = pb.reshape(inner, (1, 5))  # marker: outer
        return pb.sum(pb.subtract(0.0, outer))  # marker: sub

    compiled = pb.compile(reshaped, X, mode="value")
    assert "array.neg" not in compiled.ir("trace")
    module = Parser(make_context(), compiled.ir("simplify", locations=True)).parse_module()
    [reshape] = [op for op in module.walk() if isinstance(op, A.ReshapeOp)]
    [neg] = [op for op in module.walk() if isinstance(op, A.NegOp)]
    assert reshape.location == _where(reshaped, "outer", "pb.reshape(inner, (1, 5))")
    assert neg.location == _where(reshaped, "sub", "pb.subtract(0.0, outer)")
