"""`pullback opt`: parse MLIR text, run named passes, print; `--list-passes`."""

import subprocess
import sys

import pytest

from pullback.cli import main
from pullback.compiler.passes import PASSES

MODULE = """
builtin.module {
  func.func @f(%x: tensor<3xf64>) -> tensor<f64> {
    %0 = array.sin %x : tensor<3xf64>
    %1 = array.mul %0, %x : tensor<3xf64>
    %2 = array.reduce_sum %1 {axes = array<i64: 0>} : tensor<3xf64> -> tensor<f64>
    func.return %2 : tensor<f64>
  }
}
"""


@pytest.fixture
def mlir_file(tmp_path):
    p = tmp_path / "f.mlir"
    p.write_text(MODULE)
    return p


def test_list_passes(capsys):
    assert main(["opt", "--list-passes"]) == 0
    listed = capsys.readouterr().out.split()
    assert set(PASSES) <= set(listed)


@pytest.mark.parametrize("pipeline", [
    "autodiff", "jvp", "simplify", "cse", "dce", "canonicalize",
    "autodiff,simplify,cse,dce", "autodiff{func=f},jvp{func=f_vjp}",
    "convert-array-to-loops", "convert-array-to-loops,convert-loops-to-llvm",
    "convert-array-to-loops,expand-math,convert-loops-to-llvm",
])
def test_each_pass_runs_on_a_text_file(mlir_file, capsys, pipeline):
    assert main(["opt", str(mlir_file), "-p", pipeline, "--verify"]) == 0
    out = capsys.readouterr().out
    assert "builtin.module" in out or "module" in out
    if pipeline.startswith("autodiff"):
        assert "@f_vjp" in out
    if "jvp" in pipeline:
        assert "_jvp" in out


def test_output_parses_back(mlir_file, tmp_path, capsys):
    assert main(["opt", str(mlir_file), "-p", "autodiff,simplify"]) == 0
    again = tmp_path / "g.mlir"
    again.write_text(capsys.readouterr().out)
    assert main(["opt", str(again), "--verify"]) == 0


def test_unknown_pass_is_a_clear_error(mlir_file, capsys):
    assert main(["opt", str(mlir_file), "-p", "no-such-pass"]) == 1
    assert "no-such-pass" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "pullback.cli", "opt", "--list-passes"],
                         capture_output=True, text=True, check=True).stdout
    assert "autodiff" in out
