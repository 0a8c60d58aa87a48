"""The compiler guide's page per pass (`docs/compiler/passes/<pass-name>.md`), checked
against the registry: every pass pullback defines has a page listed in the index; each
page's Options table lists exactly the pass class's dataclass fields (name, type,
default); each page's example input is one of the pass's FileCheck inputs, and
`pullback opt` prints exactly the page's output text for it.
"""

import dataclasses
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from pullback.compiler.passes import PASSES, get_pass

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = ROOT / "docs" / "compiler" / "passes"
FILECHECK = ROOT / "tests" / "filecheck"
SECTIONS = ("Input", "Output", "Options", "Example")
OPTION_ROW = re.compile(r"^\| `([\w-]+)` \| `([^`]*)` \| `([^`]*)` \| .+\|$", re.M)
COMMAND = re.compile(r"pullback opt (\S+) -p '([^']+)'")
MLIR_BLOCK = re.compile(r"```mlir\n(.*?)```", re.S)


def pullback_passes() -> list[str]:
    """The registered passes pullback itself defines (xDSL's own, such as `cse`, and
    passes a test registers for itself are left out), read from the live registry."""
    return sorted(name for name in PASSES
                  if get_pass(name).__module__.startswith("pullback.compiler."))


def _section(page: str, title: str) -> str:
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", page, re.S | re.M)
    assert match, f"no '## {title}' section"
    return match.group(1)


def _page(name: str) -> str:
    path = PAGES / f"{name}.md"
    assert path.is_file(), (
        f"pass '{name}' has no page {path.relative_to(ROOT)}: add one with the sections "
        f"{', '.join(SECTIONS)} (see {PAGES.relative_to(ROOT)}/index.md)")
    return path.read_text()


def _pullback_command() -> list[str]:
    script = pathlib.Path(sys.executable).parent / "pullback"
    found = str(script) if script.exists() else shutil.which("pullback")
    assert found, "the `pullback` command is not installed (pip install -e .)"
    return [found]


@pytest.mark.parametrize("name", pullback_passes())
def test_page_has_every_section(name):
    page = _page(name)
    assert page.startswith(f"# `{name}`\n"), f"{name}.md must start with '# `{name}`'"
    for title in SECTIONS:
        assert _section(page, title).strip(), f"{name}.md: section '{title}' is empty"


@pytest.mark.parametrize("name", pullback_passes())
def test_options_are_the_pass_fields(name):
    expected = {}
    for field in dataclasses.fields(get_pass(name)):
        kind = field.type if isinstance(field.type, str) else field.type.__name__
        default = "required" if field.default is dataclasses.MISSING else repr(field.default)
        expected[field.name] = (kind, default)
    options = _section(_page(name), "Options")
    listed = {row[0]: (row[1], row[2]) for row in OPTION_ROW.findall(options)}
    assert listed == expected, (
        f"{name}.md: the Options table must list exactly the fields of "
        f"{get_pass(name).__qualname__} as | `name` | `type` | `default` | meaning |; "
        f"table has {listed}, the class has {expected}")
    if not expected:
        assert "None." in options, f"{name}.md: a pass without options says 'None.'"


@pytest.mark.parametrize("name", pullback_passes())
def test_example_reproduces(name, tmp_path):
    example = _section(_page(name), "Example")
    command = COMMAND.search(example)
    assert command, f"{name}.md: the example names no `pullback opt FILE -p '...'` command"
    pipeline = command.group(2)
    assert re.search(rf"(^|,){re.escape(name)}($|[{{,])", pipeline), (
        f"{name}.md: the example's pipeline '{pipeline}' does not run '{name}'")
    blocks = MLIR_BLOCK.findall(example)
    assert len(blocks) == 2, f"{name}.md: the example needs two mlir blocks, before and after"
    before, after = blocks
    assert before in (FILECHECK / f"{name}.mlir").read_text(), (
        f"{name}.md: the example's input is not a part of tests/filecheck/{name}.mlir")
    source = tmp_path / command.group(1)
    source.write_text(before)
    done = subprocess.run([*_pullback_command(), "opt", str(source), "-p", pipeline],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip("\n") == after.rstrip("\n"), (
        f"{name}.md: `pullback opt {command.group(1)} -p '{pipeline}'` prints\n{done.stdout}")


def test_index_links_every_page():
    index = (PAGES / "index.md").read_text()
    for name in pullback_passes():
        assert f"[`{name}`]({name}.md)" in index, f"index.md does not link {name}.md"
    for page in PAGES.glob("*.md"):
        if page.name != "index.md":
            assert page.stem in PASSES, f"{page.name} is the page of no registered pass"
