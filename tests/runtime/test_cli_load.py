"""`pullback opt --load MODULE`: a user's module registering an op and a pass is imported
before parsing, so both can be named on the command line; without it the op and the
pass are unknown, and a module that is missing or fails to import is a one-line error
with status 2."""

import os
import subprocess
import sys
import textwrap

import pytest

# The tutorial's softplus op, and a pass replacing it by `array.log` (a rewrite with an
# output that is easy to state, not a correct one).
EXTENSION = textwrap.dedent('''
    from dataclasses import dataclass

    import numpy as np
    from xdsl.dialects import arith, math
    from xdsl.irdl import irdl_op_definition, traits_def
    from xdsl.passes import ModulePass
    from xdsl.rewriter import Rewriter
    from xdsl.traits import Pure

    from pullback.compiler import register_op, register_pass
    from pullback.compiler.dialects.array import ExpOp, LogOp, UnaryOp
    from pullback.compiler.dialects.traits import Elementwise, Expensive, FloatOnly


    @irdl_op_definition
    class SoftplusOp(UnaryOp):
        name = "tutorial.softplus"
        traits = traits_def(Pure(), Elementwise(), FloatOnly(), Expensive())


    def softplus_element(w, op, args):
        (x,) = args
        positive = w.add(arith.MaximumfOp(x, w.constant(0.0, x.type)))
        minus_abs = w.add(arith.NegfOp(w.add(math.AbsFOp(x))))
        tail = w.add(math.Log1pOp(w.add(math.ExpOp(minus_abs))))
        return w.add(arith.AddfOp(positive, tail))


    register_op(SoftplusOp, derivative=lambda e, op: e.unary(ExpOp, e.sub(op.operand, op.result)),
                lower=softplus_element, interpret=lambda x: np.logaddexp(0.0, x))


    @dataclass(frozen=True)
    class SoftplusAsLog(ModulePass):
        name = "softplus-as-log"

        def apply(self, ctx, module):
            for op in [o for o in module.walk() if isinstance(o, SoftplusOp)]:
                Rewriter.replace_op(op, LogOp(op.operand))


    register_pass("softplus-as-log", SoftplusAsLog)
''')

PROGRAM = """func.func @f(%x: tensor<3xf64>) -> tensor<3xf64> {
  %y = tutorial.softplus %x : tensor<3xf64>
  func.return %y : tensor<3xf64>
}
"""

REWRITTEN = """builtin.module {
  func.func @f(%x: tensor<3xf64>) -> tensor<3xf64> {
    %y = array.log %x : tensor<3xf64>
    func.return %y : tensor<3xf64>
  }
}
"""


def _opt(folder, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pullback", "opt", *args], cwd=folder,
                          capture_output=True, text=True,
                          env={**os.environ, "PULLBACK_CACHE_DIR": ""})


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "softplus_ext.py").write_text(EXTENSION)
    (tmp_path / "in.mlir").write_text(PROGRAM)
    return tmp_path


@pytest.mark.parametrize("load", ["softplus_ext.py", "softplus_ext"])
def test_a_loaded_module_registers_the_op_and_the_pass_it_defines(folder, load):
    run = _opt(folder, "--load", load, "in.mlir", "-p", "softplus-as-log")
    assert (run.returncode, run.stdout, run.stderr) == (0, REWRITTEN, "")


def test_without_load_the_op_and_the_pass_are_named_as_unknown(folder):
    run = _opt(folder, "in.mlir")
    assert run.returncode == 1
    assert "tutorial.softplus is not registered" in run.stderr
    assert "--load MODULE" in run.stderr and "Traceback" not in run.stderr
    run = _opt(folder, "in.mlir", "-p", "softplus-as-log")
    assert run.returncode == 1
    assert run.stderr.startswith("pullback opt: in.mlir: unknown pass 'softplus-as-log' (a "
                                 "pass registered from outside pullback needs --load MODULE); "
                                 "registered passes: ")
    assert "Traceback" not in run.stderr


def test_missing_and_failing_modules_are_one_line_errors(folder):
    (folder / "broken.py").write_text("x = 1\nraise RuntimeError('no GPU here')\n")
    (folder / "typo.py").write_text("def f(:\n")
    expected = {
        ("no_such_module",): "--load no_such_module: no module named 'no_such_module'",
        ("gone.py",): "--load gone.py: no such file",
        ("broken.py",): "--load broken.py: importing it raised RuntimeError at broken.py:2: "
                        "no GPU here",
        ("broken",): "--load broken: importing it raised RuntimeError at ",
        ("typo.py",): "--load typo.py: ",
    }
    for (load,), message in expected.items():
        run = _opt(folder, "--load", load, "in.mlir")
        assert run.returncode == 2, load
        assert run.stderr.startswith(f"pullback opt: {message}"), run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert run.stdout == ""
    assert "typo.py:1: invalid syntax" in _opt(folder, "--load", "typo.py", "in.mlir").stderr


def test_help_describes_load():
    run = subprocess.run([sys.executable, "-m", "pullback", "opt", "--help"],
                         capture_output=True, text=True)
    assert "--load MODULE" in run.stdout and "register_pass" in run.stdout
