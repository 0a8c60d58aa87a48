"""Comparing gradients given as pytrees (arrays inside tuples, lists and dicts)."""

from __future__ import annotations

from typing import Any

import numpy as np


def leaves(tree: Any) -> list[np.ndarray]:
    """The arrays of a pytree in a fixed order (dicts by sorted key, as JAX orders them)."""
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in leaves(tree[key])]
    if isinstance(tree, tuple | list):
        return [leaf for value in tree for leaf in leaves(value)]
    if tree is None:
        raise ValueError("gradient has a None entry where an array was expected")
    return [np.asarray(tree, dtype=np.float64)]


def relative_error(actual: Any, expected: Any) -> float:
    """Largest absolute difference over the largest reference magnitude, per leaf."""
    got, want = leaves(actual), leaves(expected)
    if len(got) != len(want):
        raise ValueError(f"gradient has {len(got)} arrays, expected {len(want)}")
    worst = 0.0
    for a, b in zip(got, want, strict=True):
        if a.shape != b.shape:
            raise ValueError(f"gradient array has shape {a.shape}, expected {b.shape}")
        scale = max(float(np.max(np.abs(b), initial=0.0)), np.finfo(np.float64).tiny)
        worst = max(worst, float(np.max(np.abs(a - b), initial=0.0)) / scale)
    return worst
