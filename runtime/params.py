"""Implicit parameters: `Params`, their gradients `Grads`, `IdDict` and `copyto`.

numpy arrays are mutable and unhashable, so every container here is keyed by object
identity: two equal arrays are two different parameters. `Params` is an ordered set
of `pb.Array`s; `Grads` maps each of them to its gradient (None where the function
does not depend on it) and does value-based arithmetic that keeps the keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any

import numpy as np

from pullback.array import Array
from pullback.dsl import dtypes


class IdDict(MutableMapping):
    """A dict keyed by object identity (numpy arrays are not hashable by value)."""

    def __init__(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]] = ()):
        self._items: dict[int, tuple[Any, Any]] = {}
        pairs = items.items() if isinstance(items, Mapping) else items
        for key, value in pairs:
            self[key] = value

    def __getitem__(self, key: Any) -> Any:
        found = self._items.get(id(key))
        if found is None or found[0] is not key:
            raise KeyError(_describe(key))
        return found[1]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._items[id(key)] = (key, value)

    def __delitem__(self, key: Any) -> None:
        self[key]  # noqa: B018 (raises KeyError for a missing key)
        del self._items[id(key)]

    def __contains__(self, key: object) -> bool:
        found = self._items.get(id(key))
        return found is not None and found[0] is key

    def __iter__(self) -> Iterator[Any]:
        return iter([key for key, _ in self._items.values()])

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        inner = ", ".join(f"{_describe(k)}: {v!r}" for k, v in self._items.values())
        return f"IdDict({{{inner}}})"


class Params:
    """An ordered set of `pb.Array` parameters, compared by identity.

    `pb.gradient(f, ps)` with a zero-argument `f` differentiates with respect to the
    arrays in `ps` that `f` reads, and returns `Grads`.
    """

    def __init__(self, arrays: Iterable[Array] = ()):
        self._arrays: IdDict = IdDict()
        for a in arrays:
            self.add(a)

    def add(self, array: Array) -> None:
        """Add a parameter (nothing happens if it is already in)."""
        if not isinstance(array, Array):
            raise TypeError(
                f"Params holds pb.Array parameters, got {type(array).__name__}. Create "
                "parameters with pb.array(x) (a numpy array subclass whose reads can be "
                "traced), e.g. w = pb.array(np.zeros(3))")
        dtypes.refuse_dtype(array.dtype, "a parameter")
        if array.dtype.kind not in "iuf":
            raise TypeError(
                f"a parameter must hold numbers (float or integer), got dtype {array.dtype}")
        self._arrays[array] = None

    def __iter__(self) -> Iterator[Array]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __contains__(self, array: object) -> bool:
        return array in self._arrays

    def __repr__(self) -> str:
        return f"Params([{', '.join(_describe(a) for a in self)}])"

    @property
    def size(self) -> int:
        """The total number of elements: the length of the vector `copyto` uses."""
        return sum(a.size for a in self)


class Grads:
    """Gradients keyed by parameter (by identity), in `Params` order.

    `gs[p]` is the gradient of parameter `p` (None if the function does not depend on
    it). Arithmetic is by value and keeps the keys: `gs1 + gs2`, `gs1 - gs2`,
    `gs * 2.0`, `gs + pb.IdDict(...)`, `gs += ...`; a None entry counts as zero.
    Combining different parameter sets raises `ValueError`.
    """

    def __init__(self, params: Params, grads: IdDict):
        self.params = params
        self._grads = grads

    # -- mapping -----------------------------------------------------------------------

    def __getitem__(self, p: Any) -> Any:
        if p not in self.params:
            raise KeyError(f"{_describe(p)} is not one of these gradients' parameters")
        return self._grads.get(p)

    def __setitem__(self, p: Any, value: Any) -> None:
        if p not in self.params:
            raise KeyError(f"{_describe(p)} is not one of these gradients' parameters")
        self._grads[p] = value

    def __iter__(self) -> Iterator[Array]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __contains__(self, p: object) -> bool:
        return p in self.params

    def keys(self) -> list[Array]:
        return list(self.params)

    def values(self) -> list[Any]:
        return [self[p] for p in self.params]

    def items(self) -> list[tuple[Array, Any]]:
        return [(p, self[p]) for p in self.params]

    def __repr__(self) -> str:
        inner = ", ".join(f"{_describe(p)}: {g!r}" for p, g in self.items())
        return f"Grads({{{inner}}})"

    # -- value-based arithmetic ----------------------------------------------------------

    def _others(self, other: Any, op: str) -> list[Any]:
        """`other`'s values in this Params order; ValueError unless the keys are the same."""
        if not isinstance(other, Grads | Mapping):
            raise TypeError(
                f"Grads {op} needs Grads or a pb.IdDict keyed by the same parameters, "
                f"got {type(other).__name__}")
        keys = list(other.keys())
        if len(keys) != len(self) or any(k not in self.params for k in keys):
            raise ValueError(
                f"Grads {op}: different parameter sets ({len(self)} parameters here, "
                f"{len(keys)} in the other operand, or other arrays); combine gradients "
                "taken with respect to the same Params")
        return [other[p] for p in self.params]

    def _combine(self, other: Any, op: str, fn: Callable[[Any, Any], Any]) -> Grads:
        out = IdDict()
        for (p, g), h in zip(self.items(), self._others(other, op)):
            out[p] = _binary(fn, g, h, p)
        return Grads(self.params, out)

    def __add__(self, other: Any) -> Grads:
        return self._combine(other, "+", np.add)

    __radd__ = __add__

    def __sub__(self, other: Any) -> Grads:
        return self._combine(other, "-", np.subtract)

    def __rsub__(self, other: Any) -> Grads:
        return self._combine(other, "-", lambda a, b: np.subtract(b, a))

    def __iadd__(self, other: Any) -> Grads:
        for (p, g), h in zip(self.items(), self._others(other, "+=")):
            self._grads[p] = _inplace(np.add, g, h, p)
        return self

    def __isub__(self, other: Any) -> Grads:
        for (p, g), h in zip(self.items(), self._others(other, "-=")):
            self._grads[p] = _inplace(np.subtract, g, h, p)
        return self

    def __mul__(self, factor: Any) -> Grads:
        if not isinstance(factor, int | float | np.number) or isinstance(factor, bool):
            return NotImplemented
        return self.map(lambda g: g * factor)

    __rmul__ = __mul__

    def __truediv__(self, factor: Any) -> Grads:
        if not isinstance(factor, int | float | np.number) or isinstance(factor, bool):
            return NotImplemented
        return self.map(lambda g: g / factor)

    def __neg__(self) -> Grads:
        return self.map(np.negative)

    def map(self, fn: Callable[[np.ndarray], Any]) -> Grads:
        """New Grads with `fn` applied to each gradient (None entries stay None)."""
        return Grads(self.params, IdDict(
            (p, None if g is None else fn(g)) for p, g in self.items()))

    def foreach(self, fn: Callable[[np.ndarray], Any]) -> None:
        """Call `fn` on each gradient array, to change it in place (e.g. with `out=`)."""
        for g in self.values():
            if g is not None:
                fn(g)

    def copy(self) -> Grads:
        """New Grads with copies of the gradient arrays."""
        return self.map(np.copy)


def _binary(fn: Callable[[Any, Any], Any], g: Any, h: Any, p: Array) -> Any:
    if g is None and h is None:
        return None
    zero = np.zeros(p.shape)
    return np.asarray(fn(zero if g is None else g, zero if h is None else h))


def _inplace(fn: Callable[..., Any], g: Any, h: Any, p: Array) -> Any:
    if h is None:
        return g
    if g is None:
        return np.asarray(fn(np.zeros(p.shape), h))
    fn(g, h, out=g)
    return g


def _describe(key: Any) -> str:
    if isinstance(key, np.ndarray):
        return f"<{type(key).__name__} shape={key.shape} id={id(key):#x}>"
    return repr(key)


# -- flat vectors -----------------------------------------------------------------------


def copyto(dst: Any, src: Any) -> Any:
    """Copy parameters or gradients to or from one flat vector; returns `dst`.

    `copyto(vec, ps)` / `copyto(vec, gs)` fill the 1-d array `vec` with every parameter
    (gradient; None as zeros) flattened in row-major order, in `Params` order;
    `copyto(ps, vec)` / `copyto(gs, vec)` write `vec` back in place. The vector's
    length must equal the total number of elements, else `ValueError`.
    """
    if isinstance(dst, np.ndarray) and isinstance(src, Params | Grads):
        params = src if isinstance(src, Params) else src.params
        _check_length(dst, params)
        offset = 0
        for p in params:
            value = p if isinstance(src, Params) else src[p]
            chunk = dst[offset:offset + p.size]
            chunk[...] = 0 if value is None else np.ravel(value)
            offset += p.size
        return dst
    if isinstance(dst, Params | Grads) and isinstance(src, np.ndarray):
        params = dst if isinstance(dst, Params) else dst.params
        _check_length(src, params)
        offset = 0
        for p in params:
            chunk = src[offset:offset + p.size].reshape(p.shape)
            offset += p.size
            if isinstance(dst, Params):
                np.copyto(p, chunk, casting="same_kind")
            elif dst[p] is None:
                dst[p] = np.array(chunk, dtype=np.result_type(chunk, np.float64))
            else:
                np.copyto(dst[p], chunk, casting="same_kind")
        return dst
    raise TypeError(
        "pb.copyto(dst, src) copies between a 1-d numpy array and Params or Grads: "
        f"copyto(vec, ps), copyto(ps, vec), copyto(vec, gs), copyto(gs, vec); got "
        f"{type(dst).__name__} and {type(src).__name__}")


def _check_length(vec: np.ndarray, params: Params) -> None:
    if vec.ndim != 1:
        raise ValueError(f"pb.copyto needs a 1-d vector, got an array of shape {vec.shape}")
    if vec.size != params.size:
        raise ValueError(
            f"pb.copyto: the vector has length {vec.size} but the {len(params)} "
            f"parameters have {params.size} elements in all")
