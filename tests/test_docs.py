"""Every ```python block in README.md and docs/ runs (blocks of one page share a namespace,
and run in a fresh working folder); every ```c block then builds against the libraries
the page's Python exported there, and runs with exit status 0."""

import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
C_BLOCK = re.compile(r"```c\n(.*?)```", re.S)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = page.read_text()
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(BLOCK.findall(text)):
        exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
    for i, code in enumerate(C_BLOCK.findall(text)):
        _build_and_run(tmp_path / f"c_block_{i}", code)


def _build_and_run(folder: pathlib.Path, code: str) -> None:
    from pullback.compiler.export.toolchain import build_executable

    libraries = sorted(pathlib.Path.cwd().rglob("lib*.so"))
    assert libraries, "a C example needs a library exported by the page's Python examples"
    folder.mkdir()
    (folder / "main.c").write_text(code)
    dirs = sorted({p.parent for p in libraries})
    build_executable(folder / "main", [folder / "main.c"], include_dirs=dirs,
                     library_dirs=dirs, libraries=[p.name[3:-3] for p in libraries] + ["m"])
    done = subprocess.run([str(folder / "main")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
