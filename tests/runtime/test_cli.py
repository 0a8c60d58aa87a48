"""`pullback opt`: parse MLIR text, run named passes, print; `--list-passes`;
`pullback export` and its errors."""

import subprocess
import sys

import numpy as np
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
    "inline-checkpoints,drop-eager-updates,drop-identities,schedule-writes,fuse",
    "fuse,bufferize", "fuse,bufferize,convert-kernels-to-loops,memory-plan",
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


EXPORT_SOURCE = """
import numpy as np
import pullback as pb

x = np.linspace(0.0, 1.0, 5)


def entries():
    return {"energy": pb.compile(lambda x: pb.sum(pb.sin(x) ** 2), x, mode="withgradient")}


not_entries = 3
"""


def test_export_writes_a_library(tmp_path, capsys):
    source = tmp_path / "kern.py"
    source.write_text(EXPORT_SOURCE)
    out = tmp_path / "out"
    assert main(["export", f"{source}:entries", "-o", str(out), "--target", "x86-64-v2"]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(printed) == sorted(str(out / f) for f in (
        "libkern.so", "kern.h", "kern.json", "kern.py"))
    sys.path.insert(0, str(out))
    try:
        import kern

        x = np.linspace(0.0, 1.0, 5)
        val, (g,) = kern.load().energy(x)
    finally:
        sys.path.remove(str(out))
        sys.modules.pop("kern", None)
    np.testing.assert_allclose(val, np.sum(np.sin(x) ** 2), rtol=1e-14)
    np.testing.assert_allclose(g, 2 * np.sin(x) * np.cos(x), rtol=1e-13)


@pytest.mark.parametrize("spec, message", [
    ("{file}", "expected FILE.py:VAR"),
    ("{file}:missing", "defines no 'missing'"),
    ("{file}:not_entries", "must be a dict of entry name"),
    ("{dir}/nothere.py:entries", "no file"),
])
def test_export_errors(tmp_path, capsys, spec, message):
    source = tmp_path / "kern.py"
    source.write_text(EXPORT_SOURCE)
    arg = spec.format(file=source, dir=tmp_path)
    assert main(["export", arg, "-o", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("source, says", [
    ("import numpy as np\n\ndef entries(:\n    pass\n", "{file}:3: "),
    ("import numpy as np\n\nentries = 1 / 0\n",
     "running {file} raised ZeroDivisionError at {file}:3: "),
    ("def entries():\n    return {'e': undefined_name}\n",
     "{file}:entries() raised NameError at {file}:2: "),
])
def test_export_reports_errors_in_the_users_file(tmp_path, capsys, source, says):
    file = tmp_path / "broken.py"
    file.write_text(source)
    assert main(["export", f"{file}:entries", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pullback export: " + says.format(file=file))
    assert "Traceback" not in err and not (tmp_path / "out").exists()
