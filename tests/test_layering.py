"""The dependency direction of DESIGN.md, read from the import statements of the source.

`pullback` (runtime/) -> `pullback.dsl` (dsl/) -> `pullback.compiler.dialects`; the
runtime also drives the compiler. So:

* a module under `dsl/` imports from the compiler only `pullback.compiler.dialects`
  (and its submodules), and nothing of the runtime (`pullback.<name>` where `<name>`
  is neither `compiler` nor `dsl`);
* a module under `compiler/` imports neither `pullback.dsl` nor the runtime.

Every import statement counts, also those inside functions and under
`TYPE_CHECKING`; relative imports are resolved against the module's package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"dsl": "pullback.dsl", "compiler": "pullback.compiler"}


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _module_name(path: Path, folder: str) -> str:
    parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGES[folder], *parts])


def _imports(path: Path, folder: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file at `path`."""
    name = _module_name(path, folder)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from pullback.dsl import pytree` imports the module pullback.dsl.pytree
            yield from ((node.lineno, f"{module}.{a.name}") for a in node.names)


def _allowed_in_dsl(module: str) -> bool:
    if module == "pullback" or not module.startswith("pullback."):
        return module != "pullback"
    layer = module.split(".")[1]
    if layer == "dsl":
        return True
    if layer == "compiler":
        parts = module.split(".")
        return len(parts) >= 3 and parts[2] == "dialects"
    return False


def _allowed_in_compiler(module: str) -> bool:
    if module == "pullback" or not module.startswith("pullback."):
        return module != "pullback"
    return module.split(".")[1] == "compiler"


def _violations(folder: str, allowed) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line}: imports {module}"
            for path in _modules(folder)
            for line, module in _imports(path, folder)
            if not allowed(module)]


def test_dsl_imports_only_compiler_dialects_and_no_runtime() -> None:
    bad = _violations("dsl", _allowed_in_dsl)
    assert not bad, ("dsl/ may import only pullback.compiler.dialects from the compiler and "
                     "nothing of the runtime:\n" + "\n".join(bad))


def test_compiler_imports_neither_dsl_nor_runtime() -> None:
    bad = _violations("compiler", _allowed_in_compiler)
    assert not bad, "compiler/ may import neither pullback.dsl nor the runtime:\n" + "\n".join(bad)


@pytest.mark.parametrize(("module", "dsl_ok", "compiler_ok"), [
    ("pullback.compiler.dialects.ad.ForwardOp", True, True),
    ("pullback.compiler.dialects", True, True),
    ("pullback.compiler.passes.get_pass", False, True),
    ("pullback.compiler.undo", False, True),
    ("pullback.pytree.flatten", False, False),
    ("pullback.dsl.tracer.Tracer", True, False),
    ("pullback.api", False, False),
    ("numpy", True, True),
])
def test_the_rules_themselves(module: str, dsl_ok: bool, compiler_ok: bool) -> None:
    assert _allowed_in_dsl(module) is dsl_ok
    assert _allowed_in_compiler(module) is compiler_ok


def _package_of(module: str) -> str | None:
    """The compiler package (`transforms`, `conversion`, ...; a top-level module is its
    own) `module` belongs to, or None outside the compiler."""
    parts = module.split(".")
    if parts[:2] != ["pullback", "compiler"] or len(parts) < 3:
        return None
    return parts[2]


def _compiler_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _modules("compiler"):
        source = _package_of(_module_name(path, "compiler"))
        if source is None:
            continue
        for _, module in _imports(path, "compiler"):
            target = _package_of(module)
            if target is not None and target != source:
                graph.setdefault(source, set()).add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A dependency cycle of `graph` (its nodes in order), or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_compiler_packages_form_no_cycle() -> None:
    cycle = _cycle(_compiler_graph())
    assert cycle is None, "compiler packages import each other in a cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None
