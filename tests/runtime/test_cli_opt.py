"""`pullback opt` as an `*-opt` tool: verification, errors without tracebacks, `-o`,
standard input, IR dumps between passes, locations, closed pipes, `python -m pullback`,
`--version`, and `xdsl-opt` reading pullback IR through the `xdsl.universe` entry point."""

import dataclasses
import io
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import Float32Type, FunctionType, ModuleOp, TensorType
from xdsl.passes import ModulePass

from pullback.cli import main
from pullback.compiler import passes
from pullback.compiler.pass_spec import pass_options
from pullback.compiler.passes import PASSES, get_pass, register_pass

ROOT = Path(__file__).resolve().parents[2]

GOOD = """builtin.module {
  func.func @f(%x: tensor<3xf64>) -> tensor<f64> {
    %0 = array.sin %x : tensor<3xf64>
    %1 = array.reduce_sum %0 {axes = array<i64: 0>} : tensor<3xf64> -> tensor<f64>
    func.return %1 : tensor<f64>
  }
}
"""
# reduce_sum over axis 0 of a 3-vector gives a 0-d tensor, not a 3-vector.
INVALID = GOOD.replace("tensor<3xf64> -> tensor<f64>", "tensor<3xf64> -> tensor<3xf64>") \
              .replace("-> tensor<f64> {", "-> tensor<3xf64> {") \
              .replace("func.return %1 : tensor<f64>", "func.return %1 : tensor<3xf64>")
UNPARSABLE = GOOD.replace("array.sin %x", "array.bogus %x")


def _run(*args: str, stdin: str | None = None, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "pullback", *args], input=stdin,
                          capture_output=True, text=True,
                          env={**os.environ, "PULLBACK_CACHE_DIR": "", **(env or {})})


@dataclasses.dataclass
class _Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def opt(capsys, monkeypatch):
    """`pullback opt ARGS` in this process: its exit status and what it printed."""

    def run(*args: str, stdin: str | None = None) -> _Result:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        status = main(["opt", *args])
        out, err = capsys.readouterr()
        return _Result(status, out, err)

    return run


@pytest.fixture
def good(tmp_path):
    p = tmp_path / "good.mlir"
    p.write_text(GOOD)
    return p


@pytest.fixture
def invalid(tmp_path):
    p = tmp_path / "invalid.mlir"
    p.write_text(INVALID)
    return p


def test_the_input_is_verified_by_default(opt, invalid):
    r = opt(str(invalid))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith(f"pullback opt: {invalid}: the input does not verify: ")
    assert "'array.reduce_sum'" in r.stderr and "Traceback" not in r.stderr
    skipped = opt(str(invalid), "--no-verify")
    assert skipped.returncode == 0 and "array.reduce_sum" in skipped.stdout


@dataclasses.dataclass(frozen=True)
class _WrongResultTypes(ModulePass):
    """Declares every function to return tensor<2xf32>, which its return does not."""

    name = "test-cli-wrong-result-types"

    def apply(self, ctx, op: ModuleOp) -> None:
        wrong = TensorType(Float32Type(), [2])
        for f in op.walk():
            if isinstance(f, func.FuncOp):
                inputs = f.function_type.inputs.data
                f.function_type = FunctionType.from_lists(list(inputs), [wrong])


@dataclasses.dataclass(frozen=True)
class _Crashes(ModulePass):
    name = "test-cli-crashes"

    def apply(self, ctx, op: ModuleOp) -> None:
        raise RuntimeError("boom in the pass")


@pytest.fixture
def test_passes(monkeypatch):
    """The two passes above, registered for one test only."""
    monkeypatch.setattr(passes, "_REGISTERED", dict(passes._REGISTERED))
    for cls in (_WrongResultTypes, _Crashes):
        register_pass(cls.name, cls)


def test_the_ir_after_each_pass_is_verified(good, capsys, test_passes):
    assert main(["opt", str(good), "-p", "simplify,test-cli-wrong-result-types,cse"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"pullback opt: {good}: the IR after pass "
                                   "'test-cli-wrong-result-types' does not verify: ")
    assert "tensor<2xf32>" in captured.err
    assert main(["opt", str(good), "-p", "test-cli-wrong-result-types", "--no-verify"]) == 0
    assert "-> tensor<2xf32>" in capsys.readouterr().out


def test_a_failing_pass_is_named_without_a_traceback(good, capsys, monkeypatch, test_passes):
    monkeypatch.delenv("PULLBACK_DEBUG", raising=False)
    assert main(["opt", str(good), "-p", "simplify,test-cli-crashes"]) == 1
    err = capsys.readouterr().err
    assert err == (f"pullback opt: {good}: pass 'test-cli-crashes' failed: "
                   "RuntimeError: boom in the pass\n")
    monkeypatch.setenv("PULLBACK_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom in the pass"):
        main(["opt", str(good), "-p", "test-cli-crashes"])


def test_a_pass_refusing_its_input_is_named(opt, good):
    r = opt(str(good), "-p", "autodiff{func=nosuch}")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"pullback opt: {good}: pass 'autodiff' failed: ")
    assert "nosuch" in r.stderr


def test_parse_errors_give_file_line_and_column(opt, tmp_path):
    p = tmp_path / "bad.mlir"
    p.write_text(UNPARSABLE)
    line = next(i for i, t in enumerate(UNPARSABLE.splitlines(), 1) if "array.bogus" in t)
    r = opt(str(p))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    first, source, carets = r.stderr.splitlines()[:3]
    assert re.fullmatch(rf"pullback opt: {re.escape(str(p))}:{line}:\d+: "
                        r"Operation array\.bogus is not registered", first)
    assert source == UNPARSABLE.splitlines()[line - 1] and set(carets.strip()) == {"^"}


def test_unknown_pass_lists_the_registered_ones(opt, good):
    r = opt(str(good), "-p", "simplfy")
    assert r.returncode == 1
    assert r.stderr.startswith(f"pullback opt: {good}: unknown pass 'simplfy'")
    assert "did you mean 'simplify'" in r.stderr
    listed = r.stderr.split("registered passes: ")[1].strip().split(", ")
    assert set(PASSES) <= set(listed)


@pytest.mark.parametrize("pipeline, says", [
    ("autodiff{fnc=f}", "pass 'autodiff' has no option 'fnc'"),
    ("autodiff{wrt=x}", "pass 'autodiff':"),
    ("simplify{level=2}", "pass 'simplify' has no option 'level'; it takes no options"),
])
def test_pass_option_errors_name_the_pass_and_its_options(good, capsys, pipeline, says):
    assert main(["opt", str(good), "-p", pipeline]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"pullback opt: {good}: ") and says in err
    name = pipeline.split("{")[0]
    for field in dataclasses.fields(get_pass(name)):
        if field.name != "name" and field.init:
            assert f"{field.name}: " in err


def test_pass_options_are_read_from_the_pass_fields():
    options = {o.name: o for o in pass_options(get_pass("vmap"))}
    assert set(options) == {"func", "args", "size", "broadcast"}
    assert (options["size"].type, options["size"].default) == ("int", 1)
    assert (options["args"].type, options["args"].default) == ("tuple[int, ...]", ())


def test_pipeline_text_that_does_not_parse(good, capsys):
    assert main(["opt", str(good), "-p", "cse{x=}}"]) == 1
    assert "does not parse" in capsys.readouterr().err


def test_missing_and_unreadable_files(tmp_path):
    r = _run("opt", "x.mlir")
    assert (r.returncode, r.stderr, r.stdout) == (2, "pullback opt: no file 'x.mlir'\n", "")
    r = _run("opt", str(tmp_path))
    assert r.returncode == 2 and r.stderr == f"pullback opt: '{tmp_path}' is a folder, not a file\n"
    binary = tmp_path / "b.mlir"
    binary.write_bytes(b"builtin.module {}\n\xff\xfe")
    r = _run("opt", str(binary))
    assert r.returncode == 2 and "is not UTF-8 text" in r.stderr and "Traceback" not in r.stderr


def test_standard_input_and_output_file(opt, good, tmp_path):
    from_stdin = opt("-", "-p", "autodiff", stdin=GOOD)
    assert from_stdin.returncode == 0 and "@f_vjp" in from_stdin.stdout
    out = tmp_path / "out.mlir"
    to_file = opt(str(good), "-p", "autodiff", "-o", str(out))
    assert to_file.returncode == 0 and to_file.stdout == ""
    assert out.read_text() == from_stdin.stdout
    bad = opt("-", stdin=UNPARSABLE)
    assert bad.returncode == 1 and bad.stderr.startswith("pullback opt: <stdin>:")


def test_a_failed_run_leaves_no_output_file(opt, good, invalid, tmp_path):
    out = tmp_path / "out" / "result.mlir"
    out.parent.mkdir()
    assert opt(str(invalid), "-o", str(out)).returncode == 1
    assert opt(str(good), "-p", "no-such-pass", "-o", str(out)).returncode == 1
    assert list(out.parent.iterdir()) == []
    out.write_text("earlier result\n")
    assert opt(str(invalid), "-o", str(out)).returncode == 1
    assert out.read_text() == "earlier result\n"
    assert list(out.parent.iterdir()) == [out]
    nowhere = opt(str(good), "-o", str(tmp_path / "no" / "such" / "r.mlir"))
    assert nowhere.returncode == 2 and "no folder" in nowhere.stderr


def _headers(text: str) -> list[str]:
    return re.findall(r"^// -----// IR Dump (\w+ [\w-]+) //----- //$", text, re.M)


def test_print_ir_before_and_after_named_passes(opt, good):
    r = opt(str(good), "-p", "autodiff,simplify,cse",
             "--print-ir-before=autodiff", "--print-ir-after", "simplify,cse")
    assert r.returncode == 0
    assert _headers(r.stderr) == ["Before autodiff", "After simplify", "After cse"]
    before = r.stderr.split("IR Dump After simplify")[0]
    assert "@f_vjp" not in before and "@f_vjp" in r.stderr.split("IR Dump After simplify")[1]
    assert _headers(r.stdout) == [] and r.stdout.startswith("builtin.module")


def test_print_ir_after_all(opt, good):
    r = opt(str(good), "-p", "autodiff,simplify,dce", "--print-ir-after-all")
    assert r.returncode == 0
    assert _headers(r.stderr) == ["After autodiff", "After simplify", "After dce"]
    both = opt(str(good), "-p", "autodiff,dce", "--print-ir-before-all", "--print-ir-after-all")
    assert _headers(both.stderr) == ["Before autodiff", "After autodiff", "Before dce",
                                     "After dce"]
    # the module before the first pass is the input as parsed
    assert both.stderr.split("//----- //\n")[1].split("\n\n")[0] == GOOD.strip()
    # the last dump is the module written to standard output
    assert r.stderr.split("IR Dump After dce //----- //\n")[1].strip() == r.stdout.strip()


@pytest.mark.parametrize("flag, says", [
    ("--print-ir-after=nope", "unknown pass 'nope'"),
    ("--print-ir-before=cse", "pass 'cse' is not in the pipeline (autodiff)"),
])
def test_print_ir_refuses_passes_it_cannot_print(opt, good, flag, says):
    r = opt(str(good), "-p", "autodiff", flag)
    assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr


def test_locations_are_printed_on_request(opt, tmp_path):
    p = tmp_path / "located.mlir"
    p.write_text(GOOD.replace("array.sin %x : tensor<3xf64>",
                              'array.sin %x : tensor<3xf64> loc("model.py":12:9)'))
    plain = opt(str(p))
    assert plain.returncode == 0 and "loc(" not in plain.stdout
    located = opt(str(p), "--locations")
    sin_line = next(t for t in located.stdout.splitlines() if "array.sin" in t)
    assert sin_line.endswith('loc("model.py":12:9)')
    again = tmp_path / "again.mlir"
    again.write_text(located.stdout)
    assert opt(str(again), "--locations").stdout == located.stdout


def test_a_closed_pipe_ends_quietly(tmp_path):
    lines = ["builtin.module {", "  func.func @f(%x: tensor<3xf64>) -> tensor<3xf64> {"]
    last = "%x"
    for i in range(6000):
        lines.append(f"    %v{i} = array.sin {last} : tensor<3xf64>")
        last = f"%v{i}"
    lines += [f"    func.return {last} : tensor<3xf64>", "  }", "}"]
    big = tmp_path / "big.mlir"
    big.write_text("\n".join(lines))
    proc = subprocess.Popen([sys.executable, "-m", "pullback", "opt", str(big)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"builtin.module {\n"
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) in (0, 1)
    assert err == b""


def test_version_and_python_dash_m():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    r = _run("--version")
    assert (r.returncode, r.stdout) == (0, f"pullback {version}\n")
    listed = _run("opt", "--list-passes")
    assert listed.returncode == 0
    # a fresh process has the built-in passes only
    assert {line.split()[0] for line in listed.stdout.splitlines()} == set(PASSES)


TRACED = """
import numpy as np
import pullback as pb

c = pb.compile(lambda x: pb.sum(x * 1.0 + 0.0), np.ones(3), mode="value")
print(c.ir("trace"))
"""


def test_xdsl_opt_parses_pullback_ir_and_runs_its_passes(tmp_path):
    traced = subprocess.run([sys.executable, "-c", TRACED], capture_output=True, text=True,
                            check=True, env={**os.environ, "PULLBACK_CACHE_DIR": ""}).stdout
    assert "array.mul" in traced and "array.add" in traced
    p = tmp_path / "traced.mlir"
    p.write_text(traced)
    xdsl_opt = str(Path(sys.executable).with_name("xdsl-opt"))
    r = subprocess.run([xdsl_opt, str(p), "-p", "simplify,dce"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # x * 1 -> x and x + 0 -> x leave only the sum of the argument; dce drops the fills
    body = [t.strip() for t in r.stdout.splitlines() if "=" in t or "func.return" in t]
    assert len(body) == 2
    assert re.fullmatch(r"%(\w+) = array\.reduce_sum %0 .*", body[0])
    assert body[1].startswith(f"func.return %{body[0].split()[0][1:]} ")
    ad = subprocess.run([xdsl_opt, str(p), "-p", "autodiff"], capture_output=True, text=True)
    assert ad.returncode == 0 and "func.func @f_vjp" in ad.stdout


def test_the_universe_holds_every_pass_xdsl_lacks():
    from xdsl.transforms import get_all_passes as xdsl_passes
    from xdsl.universe import Universe

    from pullback.compiler.universe import PULLBACK_UNIVERSE

    theirs = xdsl_passes()
    for name in PASSES:
        if name in PULLBACK_UNIVERSE.all_passes:
            assert PULLBACK_UNIVERSE.all_passes[name]() is get_pass(name)
        else:  # one of xDSL's own passes, which pullback registers under xDSL's name
            assert theirs[name]() is get_pass(name)
    multiverse = Universe.get_multiverse()
    assert {"array", "ad"} <= set(multiverse.all_dialects)
    assert multiverse.all_dialects["array"]().name == "array"
    assert set(PASSES) <= set(multiverse.all_passes)
