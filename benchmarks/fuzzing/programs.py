"""Random programs over the array DSL, as Python source that runs on pullback or numpy.

A program is a list of statements `vK = <expression>` over its inputs `x0, x1, ...`,
written against a namespace called `pb`; bound to pullback it traces, bound to
`numpy_namespace()` it is the numpy reference. The generator draws every choice from
a `Chooser` (hypothesis draws in the tests, a seeded `random.Random` at scale) and
evaluates each new statement with numpy on the program's inputs, so that it can keep
every op where it is defined and smooth:

* domains: an op with a restricted domain (log, sqrt, arcsin, division, ...) gets its
  argument mapped affinely into a safe interval when its values fall outside;
* magnitudes: a result larger than `LIMIT` is scaled back, so deep programs do not
  overflow;
* kinks: comparisons, `abs`, `maximum`, `clip` and max/min reductions are placed at
  least `MARGIN` away from their switching points (exact ties, which are structural,
  are allowed: every derivative rule splits them consistently).

Programs grow to any number of ops; operands favour recent values, so depth grows
with the op count while older values keep the program wide.
"""

from __future__ import annotations

import dataclasses
import math
import random
import types
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

LIMIT = 20.0        # largest magnitude a value may keep; larger results are scaled back
MARGIN = 0.02       # smallest distance of a value from a kink of the op applied to it
MAX_SIZE = 48       # largest number of elements of any value
LARGE_SIZE = 4096   # the same for the "large" style (kernels split over work-groups)
INPUT_RANGE = (-2.0, 2.0)

# op -> interval its argument must lie in (None: unbounded on that side)
DOMAINS: dict[str, tuple[float | None, float | None]] = {
    "exp": (-4.0, 4.0), "expm1": (-4.0, 4.0), "sinh": (-4.0, 4.0), "cosh": (-4.0, 4.0),
    "log": (0.3, None), "sqrt": (0.3, None), "log1p": (-0.6, None),
    "tan": (-1.2, 1.2), "arcsin": (-0.9, 0.9), "arccos": (-0.9, 0.9),
    "sin": (None, None), "cos": (None, None), "tanh": (None, None),
    "arctan": (None, None), "negative": (None, None), "square": (None, None),
}
REDUCTIONS = ("sum", "mean", "max", "min", "prod", "logsumexp")


class Chooser(Protocol):
    """The source of every random choice the generator makes."""

    def integer(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi], both included."""
        ...


class RandomChooser:
    """Choices from a seeded `random.Random`: one seed, one program."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


def _logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    """log(sum(exp(x))) over `axis`, shifted by the maximum, with numpy's keepdims rule."""
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def numpy_namespace() -> types.SimpleNamespace:
    """The DSL's functions as numpy's: the independent reference."""
    names = ["abs", "arccos", "arcsin", "arctan", "arctan2", "broadcast_to", "clip",
             "concatenate", "cos", "cosh", "cumsum", "divide", "dot", "exp", "expand_dims",
             "expm1", "log", "log1p", "matmul", "max", "maximum", "mean", "min", "minimum",
             "multiply", "negative", "power", "prod", "ravel", "reshape", "sign", "sin",
             "sinh", "sqrt", "square", "squeeze", "stack", "subtract", "sum", "tan", "tanh",
             "transpose", "where", "add"]
    ns = types.SimpleNamespace(**{n: getattr(np, n) for n in names})
    ns.logsumexp = _logsumexp
    return ns


@dataclasses.dataclass
class Program:
    """A generated program: inputs, statements, the returned value and objective weights."""

    inputs: list[np.ndarray]
    statements: list[str]
    output: str
    weights: np.ndarray          # the gradient objective is sum(output * weights)
    ops: int                     # number of generated steps (statements)

    @property
    def names(self) -> list[str]:
        return [f"x{i}" for i in range(len(self.inputs))]

    def source(self) -> str:
        """The program as a Python function `program(x0, ...)` over the namespace `pb`."""
        body = "".join(f"    {s}\n" for s in self.statements)
        return f"def program({', '.join(self.names)}):\n{body}    return {self.output}\n"

    def function(self, namespace: Any) -> Callable[..., Any]:
        """`program` with `pb` bound to `namespace` (pullback, or `numpy_namespace()`)."""
        scope: dict[str, Any] = {"pb": namespace, "np": np}
        exec(compile(self.source(), "<fuzz program>", "exec"), scope)  # noqa: S102
        return scope["program"]

    def reproducer(self) -> str:
        """A self-contained script that defines the program, its inputs and weights."""
        lines = ["import numpy as np", "import pullback as pb", "", self.source()]
        for name, x in zip(self.names, self.inputs):
            lines.append(f"{name} = {_array_literal(x)}")
        lines.append(f"weights = {_array_literal(self.weights)}")
        lines.append(f"inputs = [{', '.join(self.names)}]")
        lines.append("objective = lambda *xs: pb.sum(program(*xs) * weights)")
        return "\n".join(lines) + "\n"


def _array_literal(x: np.ndarray) -> str:
    return f"np.array({x.tolist()!r}, dtype=np.float64).reshape({x.shape!r})"


def _choice(ch: Chooser, seq: Sequence[Any]) -> Any:
    return seq[ch.integer(0, len(seq) - 1)]


def _coin(ch: Chooser, percent: int) -> bool:
    return ch.integer(0, 99) < percent


def _sig(x: float, digits: int = 3) -> float:
    """`x` rounded to `digits` significant digits: constants that print short."""
    if x == 0 or not math.isfinite(x):
        return 0.0
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def _fits(shape: tuple[int, ...], limit: int) -> bool:
    return 1 <= math.prod(shape) <= limit


def _broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return None


class _Builder:
    """The state of one program under construction: named values and their numpy values."""

    def __init__(self, ch: Chooser, inputs: list[np.ndarray], max_size: int = MAX_SIZE):
        self.ch = ch
        self.max_size = max_size
        self.env: dict[str, np.ndarray] = {f"x{i}": x for i, x in enumerate(inputs)}
        self.order: list[str] = list(self.env)
        self.used: set[str] = set()
        self.statements: list[str] = []
        self.budget = 0  # statements the program may still take
        self.np = numpy_namespace()

    # -- values ---------------------------------------------------------------------

    def pick(self, ok: Callable[[np.ndarray], bool] = lambda v: True) -> str | None:
        """A value name, favouring recent ones (depth), sometimes any (width)."""
        names = [n for n in self.order if ok(self.env[n])]
        if not names:
            return None
        r = self.ch.integer(0, 99)
        if r < 45:
            return names[-1]
        if r < 70:
            return _choice(self.ch, names[-3:])
        return _choice(self.ch, names)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(np.shape(self.env[name]))

    def evaluate(self, expr: str, names: Sequence[str]) -> np.ndarray | None:
        scope = {"pb": self.np, "np": np, **{n: self.env[n] for n in names}}
        try:
            with np.errstate(all="raise"):
                value = np.asarray(eval(expr, scope), dtype=np.float64)  # noqa: S307
        except (FloatingPointError, ValueError, IndexError, TypeError, ZeroDivisionError):
            return None
        if not np.all(np.isfinite(value)) or not _fits(value.shape, self.max_size):
            return None
        return value

    def add(self, expr: str, operands: Sequence[str]) -> bool:
        """Evaluate `expr`; scale it back if large; keep it as a new value if valid."""
        value = self.evaluate(expr, operands)
        if value is None:
            return False
        top = float(np.max(np.abs(value)))
        if top > LIMIT:
            expr = f"({expr}) * {_sig(4.0 / top)}"
            value = self.evaluate(expr, operands)
            if value is None or float(np.max(np.abs(value))) > LIMIT:
                return False
        name = f"v{len(self.statements)}"
        self.statements.append(f"{name} = {expr}")
        self.env[name] = value
        self.order.append(name)
        self.used.update(operands)
        return True

    # -- domains and kinks ----------------------------------------------------------

    def into(self, name: str, lo: float | None, hi: float | None) -> str:
        """`name`, or an affine map of it whose values lie in [lo, hi]."""
        v = self.env[name]
        a, b = float(np.min(v)), float(np.max(v))
        if (lo is None or a >= lo) and (hi is None or b <= hi):
            return name
        lo_t = lo if lo is not None else (hi - 3.0 if hi is not None else -1.0)
        hi_t = hi if hi is not None else lo_t + 3.0
        width = hi_t - lo_t
        if b - a < 1e-12:
            return f"({name} + {_sig(lo_t + width / 2 - a)})"
        s = _sig(0.9 * width / (b - a))
        o = _sig(lo_t + 0.05 * width - s * a)
        return f"({name} * {s} + {o})"

    def gap_point(self, v: np.ndarray) -> float | None:
        """A threshold at least MARGIN from every value of `v`, often between values."""
        u = np.unique(v.ravel())
        inner = [(a + b) / 2 for a, b in zip(u[:-1], u[1:]) if b - a > 2 * MARGIN + 1e-3]
        outer = [float(u[0]) - 0.3, float(u[-1]) + 0.3]
        t = _choice(self.ch, inner) if inner and _coin(self.ch, 80) else _choice(self.ch, outer)
        t = round(float(t), 4)
        return t if float(np.min(np.abs(v - t))) >= MARGIN else None


def _near_tie(d: np.ndarray) -> bool:
    """Whether some distance is a near tie: not exactly 0, yet closer than MARGIN."""
    d = np.abs(d)
    return bool(np.any((d > 0) & (d < MARGIN)))


def _extremum_gap(v: np.ndarray, axes: tuple[int, ...], largest: bool) -> np.ndarray:
    """Distance between the extremum and the runner-up along `axes`."""
    rest = [i for i in range(v.ndim) if i not in axes]
    moved = np.transpose(v, rest + list(axes)).reshape([v.shape[i] for i in rest] + [-1])
    s = np.sort(moved, axis=-1)
    if s.shape[-1] < 2:
        return np.array([np.inf])
    return s[..., -1] - s[..., -2] if largest else s[..., 1] - s[..., 0]


# -- op families: each draws one statement, or returns False to let another try ---------


def _unary(b: _Builder) -> bool:
    name = b.pick()
    fn = _choice(b.ch, sorted(DOMAINS))
    return b.add(f"pb.{fn}({b.into(name, *DOMAINS[fn])})", [name])


def _kinked_unary(b: _Builder) -> bool:
    name = b.pick()
    v = b.env[name]
    kind = _choice(b.ch, ["abs", "sign", "relu", "clip", "min0"])
    if kind in ("abs", "sign"):
        if float(np.min(np.abs(v))) >= MARGIN and _coin(b.ch, 50):
            return b.add(f"pb.{kind}({name})", [name])
        t = b.gap_point(v)
        if t is None:
            return False
        arg = f"({name} - {t})"
        expr = f"pb.abs{arg}" if kind == "abs" else f"pb.sign{arg} * {name}"
        return b.add(expr, [name])
    if kind in ("relu", "min0"):
        t = b.gap_point(v)
        fn = "maximum" if kind == "relu" else "minimum"
        return t is not None and b.add(f"pb.{fn}({name}, {t})", [name])
    lo, hi = b.gap_point(v), b.gap_point(v)
    if lo is None or hi is None or lo == hi:
        return False
    lo, hi = min(lo, hi), max(lo, hi)
    return b.add(f"pb.clip({name}, {lo}, {hi})", [name])


def _binary(b: _Builder) -> bool:
    a = b.pick()
    sa = b.shape(a)
    other = b.pick(lambda v: (s := _broadcasts(sa, v.shape)) is not None and _fits(s, b.max_size))
    if other is None:
        return False
    va, vb = b.env[a], b.env[other]
    op = _choice(b.ch, ["+", "-", "*", "/", "add", "subtract", "multiply", "divide",
                        "maximum", "minimum", "arctan2", "power"])
    if op in ("maximum", "minimum"):
        return not _near_tie(va - vb) and b.add(f"pb.{op}({a}, {other})", [a, other])
    if op in ("/", "divide"):
        mag = float(np.min(np.abs(vb)))
        den = other if mag >= 0.3 and (np.all(vb > 0) or np.all(vb < 0)) \
            else b.into(other, 0.5, 2.0)
        text = f"{a} / {den}" if op == "/" else f"pb.divide({a}, {den})"
        return b.add(text, [a, other])
    if op == "arctan2":
        ok = float(np.min(np.broadcast_to(va, np.broadcast_shapes(va.shape, vb.shape)) ** 2
                          + vb ** 2)) >= 0.1
        x = other if ok else b.into(other, 0.5, 2.0)
        return b.add(f"pb.arctan2({a}, {x})", [a, other])
    if op == "power":
        return b.add(f"pb.power({b.into(a, 0.3, 3.0)}, {b.into(other, -2.0, 2.0)})",
                     [a, other])
    if len(op) == 1:
        return b.add(f"{a} {op} {other}", [a, other])
    return b.add(f"pb.{op}({a}, {other})", [a, other])


def _scalar(b: _Builder) -> bool:
    name = b.pick()
    c = _sig((b.ch.integer(1, 40) / 10) * (1 if _coin(b.ch, 70) else -1), 2)
    kind = b.ch.integer(0, 7)
    if kind == 0:
        expr = f"{name} * {c}"
    elif kind == 1:
        expr = f"{c} - {name}"
    elif kind == 2:
        expr = f"{name} + {c}"
    elif kind == 3:
        expr = f"{name} / {c}"
    elif kind == 4:
        expr = f"{name} ** {b.ch.integer(2, 3)}"
    elif kind == 5:
        expr = f"{b.into(name, 0.3, None)} ** {_sig(abs(c) / 2 + 0.25, 2)}"
    elif kind == 6:
        expr = f"2.0 ** {b.into(name, -4.0, 4.0)}"
    else:
        expr = f"pb.square({name})"
    return b.add(expr, [name])


def _axes_text(b: _Builder, ndim: int) -> tuple[str, tuple[int, ...]]:
    """An `axis=` argument for a value of `ndim` dimensions and the axes it names."""
    r = b.ch.integer(0, 3)
    if ndim == 0 or r == 0:
        return "None", tuple(range(ndim))
    if r in (1, 2) or ndim == 1:
        ax = b.ch.integer(-ndim, ndim - 1)
        return str(ax), (ax % ndim,)
    k = b.ch.integer(2, ndim) if ndim >= 2 else 1
    axes = sorted({b.ch.integer(0, ndim - 1) for _ in range(k)})
    return f"{tuple(axes)!r}", tuple(axes)


def _reduction(b: _Builder) -> bool:
    name = b.pick()
    v = b.env[name]
    fn = _choice(b.ch, REDUCTIONS)
    axis, axes = _axes_text(b, v.ndim)
    keep = _coin(b.ch, 40)
    if fn in ("max", "min") and _near_tie(_extremum_gap(v, axes, fn == "max")):
        return False
    arg = name
    if fn == "prod":
        n = math.prod(v.shape[a] for a in axes) if axes else 1
        arg = name if n <= 6 else b.into(name, -1.5, 1.5)
    kw = f", keepdims={keep}" if keep or _coin(b.ch, 30) else ""
    return b.add(f"pb.{fn}({arg}, axis={axis}{kw})", [name])


def _cumsum(b: _Builder) -> bool:
    name = b.pick()
    nd = b.env[name].ndim
    axis = "None" if nd == 0 or _coin(b.ch, 30) else str(b.ch.integer(-nd, nd - 1))
    return b.add(f"pb.cumsum({name}, axis={axis})", [name])


def _factor_shape(b: _Builder, size: int) -> list[int]:
    """A random shape of `size` elements with up to 4 dimensions."""
    primes, n, p = [], size, 2
    while n > 1:
        while n % p == 0:
            primes.append(p)
            n //= p
        p += 1
    ndim = b.ch.integer(1 if size > 1 else 0, 4)
    dims = [1] * ndim
    for q in primes:
        if not dims:
            dims = [1]
        dims[b.ch.integer(0, len(dims) - 1)] *= q
    return dims


def _shape_op(b: _Builder) -> bool:
    name = b.pick()
    shape = b.shape(name)
    nd = len(shape)
    kind = b.ch.integer(0, 5)
    if kind == 0:
        dims = _factor_shape(b, math.prod(shape))
        if dims and _coin(b.ch, 30):
            dims[b.ch.integer(0, len(dims) - 1)] = -1
        return b.add(f"pb.reshape({name}, {tuple(dims)!r})", [name])
    if kind == 1 and nd >= 2:
        perm = list(range(nd))
        for i in range(nd - 1, 0, -1):
            j = b.ch.integer(0, i)
            perm[i], perm[j] = perm[j], perm[i]
        text = (f"pb.transpose({name})" if _coin(b.ch, 30)
                else f"pb.transpose({name}, {tuple(perm)})")
        return b.add(text, [name])
    if kind == 2:
        return b.add(f"pb.expand_dims({name}, {b.ch.integer(-nd - 1, nd)})", [name])
    if kind == 3 and 1 in shape:
        if _coin(b.ch, 50):
            return b.add(f"pb.squeeze({name})", [name])
        ax = _choice(b.ch, [i for i, d in enumerate(shape) if d == 1])
        return b.add(f"pb.squeeze({name}, axis={ax})", [name])
    if kind == 4:
        target = [d if d != 1 or _coin(b.ch, 50) else b.ch.integer(2, 3) for d in shape]
        if _coin(b.ch, 50):
            target.insert(0, b.ch.integer(1, 3))
        return b.add(f"pb.broadcast_to({name}, {tuple(target)!r})", [name])
    return b.add(f"pb.ravel({name})", [name])


def _slice_text(b: _Builder, n: int) -> str:
    step = _choice(b.ch, [None, None, 1, 2, -1, -2])
    start = None if _coin(b.ch, 50) else b.ch.integer(-n, n - 1)
    stop = None if _coin(b.ch, 50) else b.ch.integer(-n, n)
    parts = ["" if start is None else str(start), "" if stop is None else str(stop)]
    if step is not None:
        parts.append(str(step))
    return ":".join(parts)


def _index(b: _Builder) -> bool:
    name = b.pick(lambda v: v.ndim >= 1)
    if name is None:
        return False
    shape = b.shape(name)
    k = b.ch.integer(1, len(shape))
    entries: list[str] = []
    if _coin(b.ch, 30):  # integer arrays (at least one), ints and slices, in any order
        count = b.ch.integer(1, 4)
        arrays = {b.ch.integer(0, k - 1)} | {i for i in range(k) if _coin(b.ch, 30)}
        for i in range(k):
            n = shape[i]
            if i in arrays:
                m = 1 if len(arrays) > 1 and _coin(b.ch, 20) else count  # broadcasts
                idx = [b.ch.integer(-n, n - 1) for _ in range(m)]
                two_d = m == 4 and len(arrays) == 1 and _coin(b.ch, 50)
                entries.append(f"np.array({[idx[:2], idx[2:]] if two_d else idx!r})")
            elif _coin(b.ch, 30):
                entries.append(str(b.ch.integer(-n, n - 1)))
            else:
                entries.append(_slice_text(b, n))
    else:
        for i in range(k):
            entries.append(str(b.ch.integer(-shape[i], shape[i] - 1)) if _coin(b.ch, 40)
                           else _slice_text(b, shape[i]))
        if _coin(b.ch, 15):
            entries.insert(b.ch.integer(0, len(entries)), "None")
        if _coin(b.ch, 15) and k < len(shape):
            entries.append("...")
    return b.add(f"{name}[{', '.join(entries)}]", [name])


def _matmul(b: _Builder) -> bool:
    a = b.pick(lambda v: v.ndim >= 1)
    if a is None:
        return False
    sa = b.shape(a)
    k = sa[-1]

    def compatible(v: np.ndarray) -> bool:
        if v.ndim == 1:
            return v.shape[0] == k
        if v.ndim < 2 or v.shape[-2] != k:
            return False
        return _broadcasts(sa[:-2], v.shape[:-2]) is not None

    other = b.pick(compatible)
    if other is None:
        if len(sa) == 1:
            return b.add(f"{a} @ {a}", [a])
        perm = tuple(range(len(sa) - 2)) + (len(sa) - 1, len(sa) - 2)
        return b.add(f"pb.matmul({a}, pb.transpose({a}, {perm}))", [a])
    if len(sa) <= 2 and b.env[other].ndim <= 2 and _coin(b.ch, 30):
        return b.add(f"pb.dot({a}, {other})", [a, other])
    return b.add(f"{a} @ {other}", [a, other])


def _where(b: _Builder) -> bool:
    c = b.pick()
    vc = b.env[c]
    other = b.pick(lambda v: _broadcasts(vc.shape, v.shape) is not None)
    if other is not None and other != c and _coin(b.ch, 50):
        if float(np.min(np.abs(vc - b.env[other]))) < MARGIN:
            return False
        cond, used = f"{c} > {other}", [c, other]
        cshape = tuple(np.broadcast_shapes(vc.shape, b.shape(other)))
    else:
        t = b.gap_point(vc)
        if t is None:
            return False
        cond, used, cshape = f"{c} {_choice(b.ch, ['>', '<'])} {t}", [c], vc.shape
    x = b.pick(lambda v: (s := _broadcasts(cshape, v.shape)) is not None and _fits(s, b.max_size))
    if x is None:
        return False
    y = b.pick(lambda v: (s := _broadcasts(cshape, v.shape)) is not None and _fits(s, b.max_size))
    yt = y if y is not None and _coin(b.ch, 70) else "0.0"
    return b.add(f"pb.where({cond}, {x}, {yt})", [*used, x] + ([y] if yt == y else []))


def _join(b: _Builder) -> bool:
    a = b.pick(lambda v: v.ndim >= 1)
    if a is None:
        return False
    sa = b.shape(a)
    if _coin(b.ch, 40):
        others = [n for n in b.order if b.shape(n) == sa]
        pick = [a] + [_choice(b.ch, others) for _ in range(b.ch.integer(1, 2))]
        axis = b.ch.integer(-len(sa) - 1, len(sa))
        return b.add(f"pb.stack([{', '.join(pick)}], axis={axis})", list(set(pick)))
    axis = b.ch.integer(0, len(sa) - 1)

    def same_but_axis(v: np.ndarray) -> bool:
        return v.ndim == len(sa) and all(
            d == e for i, (d, e) in enumerate(zip(v.shape, sa)) if i != axis)

    others = [n for n in b.order if same_but_axis(b.env[n])]
    pick = [a] + [_choice(b.ch, others) for _ in range(b.ch.integer(1, 2))]
    ax = axis - len(sa) if _coin(b.ch, 30) else axis
    return b.add(f"pb.concatenate([{', '.join(pick)}], axis={ax})", list(set(pick)))


_BOUNDED = ("tanh", "sigmoid", "sin", "arctan")   # |f(t)| <= pi/2 for every t


def _activation(fn: str, arg: str) -> str:
    return f"1.0 / (1.0 + pb.exp(-({arg})))" if fn == "sigmoid" else f"pb.{fn}({arg})"


def _recurrence(b: _Builder) -> bool:
    """An unrolled loop: a random cell of bounded elementwise ops applied to its states
    for several steps, as a Python loop over a recurrent network traces (deep chains of
    values that are read several times, the shape that stresses fusion and buffers)."""
    seed = b.pick(lambda v: v.size >= 2) or b.pick()
    shape = b.shape(seed)
    invariants = [n for n in b.order if _broadcasts(shape, b.shape(n)) == shape]
    inv = [_choice(b.ch, invariants) for _ in range(b.ch.integer(1, 3))]
    scale = {n: _sig(1.0 / max(1e-3, float(np.max(np.abs(b.env[n]))))) for n in inv}
    n_states, n_temps = b.ch.integer(1, 2), b.ch.integer(2, 5)
    # the cell: temp k = act(sum of terms), a term a state or earlier temp, times an
    # invariant scaled to at most 1 in magnitude; every value stays within pi/2
    cell = []
    for k in range(n_temps):
        terms = []
        for _ in range(b.ch.integer(1, 2)):
            ref = b.ch.integer(0, n_states + k - 1)
            factor = _choice(b.ch, inv) if _coin(b.ch, 60) else None
            terms.append((ref, factor))
        cell.append((_choice(b.ch, _BOUNDED), terms))
    gates = [k for k, (fn, _) in enumerate(cell) if fn == "sigmoid"]
    updates = [(b.ch.integer(0, n_temps - 1), _choice(b.ch, gates) if gates and _coin(b.ch, 60)
                else None) for _ in range(n_states)]
    steps = max(1, min(b.ch.integer(2, 12), b.budget // (n_temps + n_states)))
    states = []
    for j in range(n_states):
        if not b.add(f"pb.{'tanh' if j == 0 else 'sin'}({seed})", [seed]):
            return False
        states.append(b.order[-1])
    for _ in range(steps):
        temps: list[str] = []
        for fn, terms in cell:
            refs = states + temps
            parts = [refs[r] if f is None else f"{refs[r]} * ({f} * {scale[f]})"
                     for r, f in terms]
            used = [refs[r] for r, _ in terms] + [f for _, f in terms if f is not None]
            if not b.add(_activation(fn, " + ".join(parts)), used):
                return False
            temps.append(b.order[-1])
        new = []
        for j, (t, gate) in enumerate(updates):
            if gate is None:
                new.append(temps[t])
                continue
            g = temps[gate]
            if not b.add(f"{g} * {states[j]} + (1.0 - {g}) * {temps[t]}", [g, states[j], temps[t]]):
                return False
            new.append(b.order[-1])
        states = new
    return True


FAMILIES: list[tuple[Callable[[_Builder], bool], int]] = [
    (_unary, 24), (_binary, 20), (_scalar, 8), (_reduction, 12), (_shape_op, 10),
    (_index, 8), (_matmul, 6), (_where, 5), (_join, 4), (_kinked_unary, 5), (_cumsum, 2),
    (_recurrence, 3),
]


STYLES = {  # op family weights of each program style
    "mixed": FAMILIES,
    "recurrent": [(fn, 60 if fn is _recurrence else w) for fn, w in FAMILIES],
    "large": FAMILIES,  # inputs of 8 to 24 per dimension, values of up to LARGE_SIZE
}


def _family(ch: Chooser, families: list[tuple[Callable[[_Builder], bool], int]]
            ) -> Callable[[_Builder], bool]:
    r = ch.integer(0, sum(w for _, w in families) - 1)
    for fn, w in families:
        if r < w:
            return fn
        r -= w
    raise AssertionError("unreachable")


def _input_shapes(ch: Chooser, large: bool) -> list[tuple[int, ...]]:
    """1 to 3 input shapes, suffixes of one common shape with some dimensions set to 1,
    so that they often broadcast together; large: dimensions of 8 to 24, the first
    input with at least two."""
    universe = [ch.integer(8, 24) if large else ch.integer(1, 4) for _ in range(3)]
    shapes = []
    for i in range(ch.integer(1, 3)):
        nd = ch.integer(2 if large and i == 0 else 0, 3)
        dims = universe[3 - nd:]
        shapes.append(tuple(1 if _coin(ch, 20) else d for d in dims))
    return shapes


def generate(ch: Chooser, ops: int, style: str = "mixed") -> Program:
    """A program of about `ops` statements (a recurrence may finish a few past it; fewer
    only if no op fits after many tries). `style`: "mixed"; "recurrent" (mostly
    unrolled loops); "large" (the mixed ops on arrays of up to LARGE_SIZE elements)."""
    if style not in STYLES:
        raise ValueError(f"unknown program style {style!r}; accepted: {', '.join(STYLES)}")
    rng = np.random.default_rng(ch.integer(0, 2**32 - 1))
    large = style == "large"
    shapes = _input_shapes(ch, large)
    if large:  # at most LARGE_SIZE elements: drop leading dimensions until it fits
        shapes = [s[next(i for i in range(len(s) + 1) if math.prod(s[i:]) <= LARGE_SIZE):]
                  for s in shapes]
    inputs = [rng.uniform(*INPUT_RANGE, size=s) for s in shapes]
    b = _Builder(ch, inputs, LARGE_SIZE if large else MAX_SIZE)
    tries = 0
    while len(b.statements) < ops and tries < 8 * ops + 20:
        tries += 1
        b.budget = ops - len(b.statements)
        _family(ch, STYLES[style])(b)
    last = b.order[-1]
    loose = [n for n in b.order[:-1] if n not in b.used]
    if loose:  # every value reaches the output
        terms = " + ".join(f"pb.mean({n})" for n in loose)
        if not b.add(f"{last} + ({terms})", [last, *loose]):
            raise AssertionError("folding finite values gave a non-finite value")
    out = b.order[-1]
    weights = rng.uniform(0.5, 1.5, size=np.shape(b.env[out]))
    return Program(inputs, b.statements, out, weights, ops)
