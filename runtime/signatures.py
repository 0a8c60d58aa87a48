"""The arguments a compiled function was made for, and why a call does not match them.

A compiled function is specialised to the structure of its arguments (containers,
their lengths and keys), to each array's shape and dtype, and to each non-array
argument's value. A call that differs gets a message naming each difference by its
path as Python writes it (`x`, `model['layers'][2]['w']`, `args[1]`), with what was
passed and what the function was compiled for.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from pullback.dsl.pytree import Tree, child_keys, describe, flatten, leaf_paths
from pullback.program import MASK, STATIC, classify, input_array

LeafSignature = tuple[Any, ...]
"""`(kind,)` for a non-array leaf, else `(kind, shape, dtype name)` as passed to native code."""

MAX_LISTED = 3
"""Differences named in one message; the rest are counted."""


def leaf_signature(leaf: Any, kind: str) -> LeafSignature:
    """What a compiled function is specialised to for one argument leaf of `kind`."""
    if kind == STATIC:
        return (kind,)
    arr = input_array(leaf, kind)
    return (kind, arr.shape, str(arr.dtype))


@dataclasses.dataclass(frozen=True)
class ArgumentNames:
    """What to call the function's positional arguments: its parameter names, then
    `args[i]` for what its `*args` takes."""

    positional: tuple[str, ...]
    star: str | None

    @classmethod
    def of(cls, f: Callable[..., Any]) -> ArgumentNames:
        try:
            params = list(inspect.signature(f).parameters.values())
        except (TypeError, ValueError):
            return cls((), None)
        positional = tuple(p.name for p in params if p.kind in (
            inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))
        star = next((p.name for p in params if p.kind == inspect.Parameter.VAR_POSITIONAL),
                    None)
        return cls(positional, star)

    def picked(self, positions: list[int]) -> ArgumentNames:
        """The names of the arguments at `positions`, numbered from 0 in that order."""
        return ArgumentNames(tuple(self(i) for i in positions), None)

    def __call__(self, i: int) -> str:
        if i < len(self.positional):
            return self.positional[i]
        if self.star is not None:
            return f"{self.star}[{i - len(self.positional)}]"
        return f"args[{i}]"


@dataclasses.dataclass(frozen=True)
class Expected:
    """The arguments a function was compiled for: their structure, each leaf's kind and
    signature, and the value of each non-array leaf (None for arrays)."""

    tree: Tree
    names: ArgumentNames
    kinds: list[str]
    signatures: list[LeafSignature]
    static: list[Any]

    @classmethod
    def of(cls, tree: Tree, names: ArgumentNames, kinds: list[str],
           leaves: list[Any]) -> Expected:
        return cls(tree, names, list(kinds),
                   [leaf_signature(leaf, k) for leaf, k in zip(leaves, kinds)],
                   [leaf if k == STATIC else None for leaf, k in zip(leaves, kinds)])

    def paths(self) -> list[str]:
        return [p for i, child in enumerate(self.tree.children)
                for p in leaf_paths(child, self.names(i))]

    def matches(self, leaves: list[Any], tree: Tree) -> bool:
        """Whether a call with these leaves and structure runs this compiled code."""
        return tree == self.tree and all(
            _same_leaf(self, i, leaf) for i, leaf in enumerate(leaves))


def check(expected: Expected, args: tuple[Any, ...], leaves: list[Any], tree: Tree) -> None:
    """Raise a TypeError naming every difference of a call's arguments from `expected`."""
    if expected.matches(leaves, tree):
        return
    if tree != expected.tree:
        problems = [_structure(expected, expected.tree, tuple(args), "", 0)]
    else:
        paths = expected.paths()
        problems = [_leaf(expected, i, paths[i], leaf) for i, leaf in enumerate(leaves)
                    if not _same_leaf(expected, i, leaf)]
    listed = "; ".join(problems[:MAX_LISTED])
    if len(problems) > MAX_LISTED:
        listed += f"; and {len(problems) - MAX_LISTED} more"
    raise TypeError(
        f"this compiled function was made for another argument signature: {listed}. Call "
        "pb.compile again for these (compiled code is specialised to the arguments' "
        "structure, array shapes and dtypes, and non-array values)")


def _same_leaf(expected: Expected, i: int, leaf: Any) -> bool:
    sig = expected.signatures[i]
    if type(leaf) is np.ndarray and len(sig) == 3 and leaf.shape == sig[1] \
            and leaf.dtype.name == sig[2]:
        return True  # the common case, without converting: already of the compiled dtype
    kind = expected.kinds[i]
    if kind == STATIC:
        static = expected.static[i]
        return leaf is static or (classify(leaf) == STATIC and _equal(leaf, static))
    got = classify(leaf)
    return got == kind and leaf_signature(leaf, got) == expected.signatures[i]


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _leaf(expected: Expected, i: int, path: str, leaf: Any) -> str:
    """How one leaf differs from what it was compiled for."""
    kind = expected.kinds[i]
    got_kind = classify(leaf)
    if kind == STATIC and got_kind == STATIC:
        return (f"the non-array argument {path} is {leaf!r}, but the function was compiled "
                f"with {expected.static[i]!r} there (non-array values are fixed when "
                "compiling)")
    got = "" if got_kind == STATIC else _leaf_words(leaf_signature(leaf, got_kind), None)
    return (f"{path} is {got or repr(leaf)}, but the function was compiled for "
            f"{_leaf_words(expected.signatures[i], expected.static[i])}")


def _leaf_words(sig: LeafSignature, static: Any) -> str:
    if sig[0] == STATIC:
        return f"the non-array value {static!r}"
    kind, shape, dtype = sig
    if kind == MASK:
        return f"a bool array of shape {shape}"
    return f"a {dtype} scalar" if shape == () else f"a {dtype} array of shape {shape}"


def _structure(expected: Expected, tree: Tree, value: Any, path: str, first: int) -> str:
    """The first place where `value`'s structure differs from `tree` (the structure the
    leaves from index `first` on were compiled with)."""
    got = flatten(value)[1]
    if tree.kind == "leaf" or got.kind == "leaf":
        if tree.kind == "leaf":
            want = _leaf_words(expected.signatures[first], expected.static[first])
        else:
            want = describe(tree)
        what = describe(got) if got.kind != "leaf" else _value_words(value)
        return f"{path} is {what}, but the function was compiled for {want}"
    if not path:
        return _arguments(expected, tree, value)
    if got.kind != tree.kind or got.meta != tree.meta or len(got.children) != len(tree.children):
        return f"{path} is {_container_words(got, tree)}"
    return _children(expected, tree, value, path, first)


def _arguments(expected: Expected, tree: Tree, args: tuple[Any, ...]) -> str:
    n, m = len(tree.children), len(args)
    if n != m:
        names = ", ".join(expected.names(i) for i in range(n))
        which = (f"extra: {', '.join(expected.names(i) for i in range(n, m))}" if m > n
                 else f"missing: {', '.join(expected.names(i) for i in range(m, n))}")
        return (f"it was called with {m} argument{'s' * (m != 1)}, but compiled for {n} "
                f"({names}); {which}")
    return _children(expected, tree, args, "", 0)


def _children(expected: Expected, tree: Tree, value: Any, path: str, first: int) -> str:
    items = list(value.values()) if isinstance(value, dict) else (
        [getattr(value, f.name) for f in dataclasses.fields(value)]
        if dataclasses.is_dataclass(value) else list(value))
    keys = child_keys(tree) if path else [expected.names(i) for i in range(len(items))]
    for key, child, item in zip(keys, tree.children, items):
        if flatten(item)[1] != child:
            return _structure(expected, child, item, path + key, first)
        first += child.num_leaves
    raise AssertionError("the structures differ but no child does")


def _container_words(got: Tree, want: Tree) -> str:
    if got.kind == want.kind == "dict":
        missing = [k for k in want.meta if k not in got.meta]
        extra = [k for k in got.meta if k not in want.meta]
        if not missing and not extra:
            return (f"a dict with keys {list(got.meta)}, but the function was compiled for "
                    f"the same keys in the order {list(want.meta)}")
        parts = ([f"missing {missing}"] if missing else []) + (
            [f"unexpected {extra}"] if extra else [])
        return (f"a dict with keys {list(got.meta)}, but the function was compiled for keys "
                f"{list(want.meta)} ({'; '.join(parts)})")
    return f"{describe(got)}, but the function was compiled for {describe(want)}"


def _value_words(value: Any) -> str:
    kind = classify(value)
    return repr(value) if kind == STATIC else _leaf_words(leaf_signature(value, kind), None)
