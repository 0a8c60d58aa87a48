"""The pass tests in MLIR's style: `tests/filecheck/<pass-name>.mlir` files whose `// RUN:`
lines run `pullback opt` and check its output with FileCheck patterns, run by lit.

Every pass pullback registers must have such a file, so a new pass without one fails here.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from pullback.compiler.passes import PASSES, get_pass

FOLDER = pathlib.Path(__file__).resolve().parent / "filecheck"
RUN_LINE = re.compile(r"^// RUN: (.*)$", re.M)


def pullback_passes() -> list[str]:
    """The registered passes that pullback itself defines (xDSL's own, such as `cse`, and
    passes a test registers for itself are left out), read from the live registry."""
    return sorted(name for name in PASSES
                  if get_pass(name).__module__.startswith("pullback.compiler."))


def test_every_pullback_pass_has_a_filecheck_file():
    missing = [name for name in pullback_passes() if not (FOLDER / f"{name}.mlir").is_file()]
    assert not missing, (
        f"passes without a test file in {FOLDER}: {', '.join(missing)}; add "
        f"'<pass-name>.mlir' with '// RUN: pullback opt %s -p <pass> | filecheck %s' lines")


def test_every_filecheck_file_runs_its_pass():
    """Each file is named for a registered pass and has a RUN line whose pipeline runs it
    (a renamed or removed pass cannot leave a stale file that tests nothing)."""
    for path in sorted(FOLDER.glob("*.mlir")):
        name = path.stem
        assert name in PASSES, f"{path.name} is named for no registered pass"
        runs = RUN_LINE.findall(path.read_text())
        assert runs, f"{path.name} has no '// RUN:' line"
        pipelines = [re.search(r"-p\s+'?([^'|]*)", run) for run in runs]
        named = [p for p in pipelines if p and re.search(
            rf"(^|,){re.escape(name)}($|[{{,\s])", p.group(1).strip())]
        assert named, f"no RUN line of {path.name} runs the pass '{name}'"


def test_lit_passes():
    """Run lit on the folder; any failure fails with lit's report."""
    venv_bin = str(pathlib.Path(sys.executable).parent)
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(
        [sys.executable, "-c", "from lit.main import main; main()", "-v", str(FOLDER)],
        capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"lit failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    assert "Passed" in done.stdout, done.stdout
