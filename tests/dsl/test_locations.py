"""Source locations: traced ops carry the user's `file:line:column`, derivative ops that
of their primal op; verifier and lowering errors name it; `ir(stage, locations=True)`
prints it as MLIR `loc(...)`, and the structural key ignores it.

Expected lines and columns are found in this file's own source (by marker comments),
never read from the IR under test.
"""

import inspect

import numpy as np
import pytest
from xdsl.dialects.builtin import FileLineColLoc, IntAttr, StringAttr, UnknownLoc
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException

import pullback as pb
from pullback.compiler.backends import llvm
from pullback.compiler.context import make_context
from pullback.compiler.diagnostics import verify
from pullback.compiler.dialects import array as A
from pullback.compiler.ir_dump import module_text
from pullback.program import trace_program

X = np.linspace(0.1, 0.9, 3)
W = np.full(3, 2.0)


def _model(x):
    y = np.sin(x)  # marker: sin
    z = y * W  # marker: closure
    return pb.sum(z)  # marker: sum


def _where(fn, marker: str, expression: str) -> FileLineColLoc:
    """The location of `expression` on the line of `fn` that ends with `# marker: ...`."""
    lines, first = inspect.getsourcelines(fn)
    for offset, text in enumerate(lines):
        if text.rstrip().endswith(f"# marker: {marker}"):
            column = text.index(expression) + 1
            return FileLineColLoc(StringAttr(fn.__code__.co_filename), IntAttr(first + offset),
                                  IntAttr(column))
    raise AssertionError(f"no marker {marker!r} in {fn.__name__}")


def _ops(module, cls):
    return [op for op in module.walk() if isinstance(op, cls)]


def _loc_text(loc: FileLineColLoc) -> str:
    return f'loc("{loc.filename.data}":{loc.line.data}:{loc.column.data})'


def test_traced_ops_carry_the_users_file_line_and_column():
    module = trace_program(_model, (X,)).module
    [sin] = _ops(module, A.SinOp)
    [mul] = _ops(module, A.MulOp)
    [total] = _ops(module, A.ReduceSumOp)
    assert sin.location == _where(_model, "sin", "np.sin(x)")
    assert mul.location == _where(_model, "closure", "y * W")
    assert total.location == _where(_model, "sum", "pb.sum(z)")


def test_a_closed_over_array_input_is_located_where_it_is_first_read():
    module = trace_program(_model, (X,)).module
    fn = next(op for op in module.walk() if op.name == "func.func")
    x_arg, w_arg = fn.body.block.args
    assert isinstance(x_arg.location, UnknownLoc)
    assert w_arg.location == _where(_model, "closure", "y * W")


def test_the_same_code_traced_from_two_places_has_one_key():
    first = lambda x: pb.sum(np.exp(x) * 0.3071)  # noqa: E731  # marker: first
    second = lambda x: pb.sum(np.exp(x) * 0.3071)  # noqa: E731  # marker: second
    a, b = trace_program(first, (X,)), trace_program(second, (X,))
    [exp_a], [exp_b] = _ops(a.module, A.ExpOp), _ops(b.module, A.ExpOp)
    assert exp_a.location == _where(first, "first", "np.exp(x)")
    assert exp_b.location == _where(second, "second", "np.exp(x)")
    assert exp_a.location != exp_b.location
    assert a.key == b.key
    before = pb.cache_info()
    pb.compile(first, X)
    pb.compile(second, X)
    after = pb.cache_info()
    assert after.compiles - before.compiles == 1 and after.hits - before.hits == 1


@pytest.mark.parametrize(("mode", "stage"), [("gradient", "autodiff"), ("jacobian", "vmap"),
                                           ("hessian", "jvp")])
def test_derivative_ops_carry_the_location_of_their_primal_op(mode, stage):
    compiled = pb.compile(_model, X, mode=mode)
    module = Parser(make_context(), compiled.ir(stage, locations=True)).parse_module()
    cosines = _ops(module, A.CosOp)  # made only by the derivative rules of np.sin
    assert cosines
    for op in cosines + _ops(module, A.SinOp):
        assert op.location == _where(_model, "sin", "np.sin(x)")


@pytest.mark.parametrize("mode", ["value", "gradient", "jacobian", "hessian"])
def test_printing_with_locations_parses_back_to_the_same_program(mode):
    compiled = pb.compile(_model, X, mode=mode)
    for stage in compiled.stages:
        plain = compiled.ir(stage)
        located = compiled.ir(stage, locations=True)
        assert "loc(" not in plain
        module = Parser(make_context(), located).parse_module()
        assert str(module) == plain
        assert module_text(module, locations=True) == located
    assert _loc_text(_where(_model, "sin", "np.sin(x)")) in compiled.ir("trace", locations=True)


def test_a_verifier_error_names_the_line_of_the_op():
    def two_inputs(x, v):
        return x * 2.0, v + 1.0  # marker: mul

    module = trace_program(two_inputs, (X, np.ones(2))).module.clone()
    [mul] = _ops(module, A.MulOp)
    fn = next(op for op in module.walk() if op.name == "func.func")
    mul.operands = (mul.operands[0], fn.body.block.args[1])  # tensor<3xf64> * tensor<2xf64>
    where = _where(two_inputs, "mul", "x * 2.0")
    with pytest.raises(VerifyException) as e:
        verify(module)
    assert str(e.value).startswith(
        f"{where.filename.data}:{where.line.data}:{where.column.data}: ")
    assert "array.mul" in str(e.value)


def test_a_lowering_error_names_the_line_of_the_op():
    """`array.sign` of a mask verifies but has no lowering (the DSL refuses it earlier,
    as numpy does): the lowering's error starts with the op's location."""
    text = """
    func.func @f(%x: tensor<3xi1>) -> tensor<3xi1> {
      %y = array.sign %x : tensor<3xi1> loc("model.py":12:5)
      func.return %y : tensor<3xi1>
    }
    """
    module = Parser(make_context(), text).parse_module()
    with pytest.raises(NotImplementedError) as e:
        llvm.compile_function(module, "f")
    message = str(e.value)
    assert message.startswith("model.py:12:5: ")
    assert "'array.sign' has no lowering for element type i1" in message


def test_an_in_place_shape_error_names_the_line():
    def accumulate(x, y):
        x += y  # marker: write
        return pb.sum(x)

    where = _where(accumulate, "write", "x += y")
    with pytest.raises(pb.ShapeError, match=r"\(2, 3\).*\(3,\)") as e:
        pb.compile(accumulate, X, np.ones((2, 3)), mode="value")
    assert f"{where.filename.data}:{where.line.data}: `x += y" in str(e.value)
