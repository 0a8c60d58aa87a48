"""Pytrees: nested tuples, lists, dicts, NamedTuples and dataclasses of leaves.

`flatten` turns a value into a list of leaves and a `Tree` describing its structure;
`Tree.unflatten` rebuilds a value of the same structure from new leaves. Anything
that is not one of these containers (arrays, numbers, strings, None, objects) is a leaf.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any


@dataclasses.dataclass(frozen=True)
class Tree:
    """The structure of a pytree: a container kind, its metadata, and its children."""

    kind: str  # "leaf", "tuple", "list", "dict", "namedtuple", "dataclass"
    meta: Any = None
    children: tuple[Tree, ...] = ()

    @property
    def num_leaves(self) -> int:
        return 1 if self.kind == "leaf" else sum(c.num_leaves for c in self.children)

    def unflatten(self, leaves: list[Any]) -> Any:
        it = iter(leaves)
        out = self._build(it)
        if next(it, _END) is not _END:
            raise ValueError("too many leaves for this tree")
        return out

    def _build(self, it: Iterator[Any]) -> Any:
        if self.kind == "leaf":
            return next(it)
        values = [c._build(it) for c in self.children]
        if self.kind == "tuple":
            return tuple(values)
        if self.kind == "list":
            return values
        if self.kind == "dict":
            return dict(zip(self.meta, values))
        if self.kind == "namedtuple":
            return self.meta(*values)
        cls, names = self.meta
        return _make_dataclass(cls, dict(zip(names, values)))


_END = object()


def _make_dataclass(cls: type, fields: dict[str, Any]) -> Any:
    obj = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def children(x: Any) -> tuple[str, Any, list[Any]] | None:
    """(kind, meta, children) of a container, or None for a leaf."""
    if _is_namedtuple(x):
        return "namedtuple", type(x), list(x)
    if isinstance(x, tuple):
        return "tuple", None, list(x)
    if isinstance(x, list):
        return "list", None, list(x)
    if isinstance(x, dict):
        return "dict", tuple(x.keys()), list(x.values())
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        names = tuple(f.name for f in dataclasses.fields(x))
        return "dataclass", (type(x), names), [getattr(x, n) for n in names]
    return None


def flatten(x: Any) -> tuple[list[Any], Tree]:
    """The leaves of `x` in order, and its structure."""
    leaves: list[Any] = []
    return leaves, _flatten(x, leaves)


def _flatten(x: Any, leaves: list[Any]) -> Tree:
    c = children(x)
    if c is None:
        leaves.append(x)
        return Tree("leaf")
    kind, meta, items = c
    return Tree(kind, meta, tuple(_flatten(i, leaves) for i in items))


def tree_map(fn: Callable[[Any], Any], x: Any) -> Any:
    """`x` with `fn` applied to every leaf."""
    leaves, tree = flatten(x)
    return tree.unflatten([fn(v) for v in leaves])


def first_entry(x: Any) -> tuple[Any, bool]:
    """The first entry of a container output (the differentiated one), and whether it was one."""
    c = children(x)
    if c is None:
        return x, False
    kind, meta, items = c
    if not items:
        raise ValueError(f"the function returned an empty {kind}; nothing to differentiate")
    return items[0], True


def child_keys(tree: Tree) -> list[str]:
    """How each child of a container is written after its parent: `[0]`, `['w']`, `.b`."""
    if tree.kind in ("tuple", "list"):
        return [f"[{i}]" for i in range(len(tree.children))]
    if tree.kind == "dict":
        return [f"[{k!r}]" for k in tree.meta]
    if tree.kind == "namedtuple":
        return [f".{name}" for name in tree.meta._fields]
    if tree.kind == "dataclass":
        return [f".{name}" for name in tree.meta[1]]
    return []


def leaf_paths(tree: Tree, root: str) -> list[str]:
    """The path of each leaf of `tree`, in leaf order, as Python writes it from `root`:
    `model['layers'][2]['w']`, `state.step`."""
    if tree.kind == "leaf":
        return [root]
    return [path for key, child in zip(child_keys(tree), tree.children)
            for path in leaf_paths(child, root + key)]


def describe(tree: Tree) -> str:
    """A container's kind and size in words: `a list of 3 entries`, `a dict with keys
    ['a', 'b']`, `a Point (NamedTuple)`; `a leaf` for a leaf."""
    if tree.kind in ("tuple", "list"):
        n = len(tree.children)
        return f"a {tree.kind} of {n} {'entry' if n == 1 else 'entries'}"
    if tree.kind == "dict":
        return f"a dict with keys {list(tree.meta)}"
    if tree.kind == "namedtuple":
        return f"a {tree.meta.__name__} (NamedTuple)"
    if tree.kind == "dataclass":
        return f"a {tree.meta[0].__name__} (dataclass)"
    return "a leaf"
