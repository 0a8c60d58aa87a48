"""`expand-math`: transcendental `math` ops as branch-free `arith` code that vectorizes.

LLVM lowers `llvm.exp`, `llvm.tanh`, ... to scalar libm calls, so a loop containing
one is never vectorized. This kernel-level pass replaces `math.exp`, `math.expm1`,
`math.tanh`, `math.log` and `math.log1p` on f64 and f32 scalars by straight-line
code of float arithmetic, compares and selects, i64 adds, multiplies and divisions
by powers of two (LLVM turns them into shifts), and `arith.bitcast` between f64 and
i64, which LLVM's loop vectorizer turns into SIMD code. Other ops and types are left
alone. Every step is round-to-nearest f64 arithmetic; no fast-math flag is set (the
rounding tricks below rely on it).

Method, in f64 (an f32 op is extended to f64, expanded with shorter polynomials,
and rounded back, which makes it nearly correctly rounded):
* exp: `x = k*ln2 + r`, `|r| <= ln2/2`, with `k = round(x/ln2)` found by adding and
  subtracting `1.5 * 2^52`, whose bit pattern then holds k as an integer; `ln2` is
  split into a 32-bit `hi` part (`k*hi` exact) and a `lo` part. `exp(r) = 1 +
  expm1(r)`, `expm1(r) = r + r^2 * (1/2! + r/3! + ... + r^11/13!)` (Taylor; truncation
  below 2^-60, 2^-40 for f32). The result is scaled by `2^k1 * 2^k2`, `k1 = k/2`,
  `k2 = k - k1`, each power built from its exponent bits, so overflow gives inf and
  a subnormal result is rounded once. x is clamped first (NaN passes), which also
  handles +-inf.
* expm1: the same reduction; `(expm1(r) + (1 - 2^-k)) * 2^k` for -1 <= k <= 52 (one
  rounding besides the polynomial's), `(expm1(r) + 1) * 2^k - 1` otherwise.
* tanh: for `|x| < 0.3` the Taylor series `x + x * w * P(w)`, `w = x^2`, coefficients
  from Bernoulli numbers (13 terms); otherwise `sign(x) * e / (e + 2)` with
  `e = expm1(2|x|)`, and 1 for `|x| > 20`.
* log: integer operations on the bits give `x = 2^k * z`, `z` in [sqrt(1/2),
  sqrt(2)) (subnormals are scaled into the normal range first); with `f = z - 1`,
  `s = f / (2 + f)`: `log(z) = 2 atanh(s) = f - f^2/2 + s * (f^2/2 + R(s^2))`,
  `R(w) = 2w/3 + 2w^2/5 + ...` (Taylor, 10 terms), and `log(x) = k*ln2_hi - ((f^2/2
  - (s*(f^2/2 + R) + k*ln2_lo)) - f)`. 0 gives -inf, negatives NaN, +inf and NaN
  themselves.
* log1p: `u = 1 + x`, `log(u) - ((u - 1) - x) / u` (the quotient corrects the
  rounding of `u`).
* expm1, tanh and log1p return `x` itself where `|x| < 2^-54` (they round to it
  there), which keeps the sign of -0.0.

Measured against numpy over 6 million points per function and width (magnitudes
log-uniform over the whole range, both signs, uniform on [-2, 2], special values):
f64 within 1 ulp of numpy for exp, log and log1p, within 2 ulp for expm1 and tanh
(numpy itself is up to 1 ulp from the correctly rounded result there); f32 equal to
numpy's f64 result rounded to f32, but for rare 1-ulp cases of log1p (numpy's own
float32 routines are up to 2 ulp, log 4 ulp, from that). inf, NaN, -0.0, overflow
and underflow as numpy.
"""

from __future__ import annotations

import math as pymath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
from xdsl.context import Context
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import (
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    f32,
    f64,
    i64,
)
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter


def _ln2() -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 50
        return Decimal(2).ln()


_MANTISSA_BITS = 52  # f64 stored fraction bits
_BIAS = 1023  # f64 exponent bias
_SHIFTER = 1.5 * 2.0**_MANTISSA_BITS  # adding it rounds to an integer in the low bits
_LN2_HI = float.fromhex("0x1.62e42fee00000p-1")  # 32 bits: k * _LN2_HI is exact
_LN2_LO = float(_ln2() - Decimal(_LN2_HI))
_EXP_LOW = -746.0  # exp(x) rounds to 0 below
_EXP_HIGH = 710.0  # exp(x) rounds to inf above
_EXPM1_LOW = -40.0  # expm1(x) rounds to -1 below
_TANH_HIGH = 20.0  # tanh(x) rounds to 1 above
_TANH_SERIES = 0.3  # tanh by its Taylor series below
_TINY = 2.0**-54  # expm1(x), tanh(x) and log1p(x) round to x below


def _bits(value: float) -> int:
    """The bit pattern of f64 `value` as an unsigned integer."""
    return int(np.array(value, np.float64).view(np.uint64))


@dataclass(frozen=True)
class _Precision:
    """Polynomial lengths: the full f64 ones, or shorter ones for f32 results."""

    exp_degree: int  # exp(r) = sum r^n/n!, n <= exp_degree, |r| <= ln2/2
    log_terms: int  # terms of R(w) = 2w/3 + 2w^2/5 + ...
    tanh_terms: int  # Taylor terms of tanh(x), |x| < _TANH_SERIES


# Truncation errors below 2^-60 relative (f64) and 2^-37 (f32, computed in f64).
_FULL = _Precision(exp_degree=13, log_terms=10, tanh_terms=13)
_SINGLE = _Precision(exp_degree=10, log_terms=6, tanh_terms=8)


class _Emitter:
    """Builds a straight-line sequence of f64 arith ops."""

    def __init__(self, precision: _Precision) -> None:
        self.precision = precision
        self.ops: list[Operation] = []

    def _add(self, op: Operation) -> SSAValue:
        self.ops.append(op)
        return op.results[0]

    # float arithmetic
    def const(self, value: float | Fraction | Decimal) -> SSAValue:
        return self._add(arith.ConstantOp(FloatAttr(float(value), f64)))

    def add(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._add(arith.AddfOp(a, b))

    def sub(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._add(arith.SubfOp(a, b))

    def mul(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._add(arith.MulfOp(a, b))

    def div(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._add(arith.DivfOp(a, b))

    def neg(self, a: SSAValue) -> SSAValue:
        return self._add(arith.NegfOp(a))

    def abs(self, a: SSAValue) -> SSAValue:
        return self._add(math.AbsFOp(a))

    def horner(self, x: SSAValue, coefficients: Sequence[Fraction]) -> SSAValue:
        """c0 + x*(c1 + x*(c2 + ...)), coefficients from the constant term up."""
        acc = self.const(coefficients[-1])
        for c in reversed(coefficients[:-1]):
            acc = self.add(self.const(c), self.mul(x, acc))
        return acc

    # compares and selects
    def cmp(self, predicate: str, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._add(arith.CmpfOp(a, b, predicate))

    def both(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._add(arith.AndIOp(a, b))

    def select(self, cond: SSAValue, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._add(arith.SelectOp(cond, a, b))

    def clamp(self, x: SSAValue, low: float, high: float) -> SSAValue:
        """x limited to [low, high]; NaN stays NaN."""
        lo, hi = self.const(low), self.const(high)
        x = self.select(self.cmp("olt", x, lo), lo, x)
        return self.select(self.cmp("ogt", x, hi), hi, x)

    # i64 arithmetic on bit patterns
    def iconst(self, value: int) -> SSAValue:
        return self._add(arith.ConstantOp(IntegerAttr(value, i64)))

    def iadd(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._add(arith.AddiOp(a, b))

    def isub(self, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._add(arith.SubiOp(a, b))

    def shl(self, a: SSAValue, n: int) -> SSAValue:
        """a * 2^n, wrapping (LLVM emits a shift)."""
        return self._add(arith.MuliOp(a, self.iconst(1 << n)))

    def shr(self, a: SSAValue, n: int) -> SSAValue:
        """a / 2^n, unsigned (LLVM emits a logical shift)."""
        return self._add(arith.DivUIOp(a, self.iconst(1 << n)))

    def half(self, a: SSAValue) -> SSAValue:
        """a / 2 rounded toward zero, signed."""
        return self._add(arith.DivSIOp(a, self.iconst(2)))

    def icmp(self, predicate: str, a: SSAValue, b: SSAValue) -> SSAValue:
        return self._add(arith.CmpiOp(a, b, predicate))

    def to_bits(self, x: SSAValue) -> SSAValue:
        return self._add(arith.BitcastOp(x, i64))

    def from_bits(self, x: SSAValue) -> SSAValue:
        return self._add(arith.BitcastOp(x, f64))

    def int_to_float(self, k: SSAValue) -> SSAValue:
        """Integer k (|k| < 2^51) as a float, through the bits of 1.5 * 2^52 + k."""
        bits = self.iadd(k, self.iconst(_bits(_SHIFTER)))
        return self.sub(self.from_bits(bits), self.const(_SHIFTER))

    def pow2(self, k: SSAValue) -> SSAValue:
        """2^k for an integer k in the normal exponent range."""
        return self.from_bits(self.shl(self.iadd(k, self.iconst(_BIAS)), _MANTISSA_BITS))


def _tanh_series(terms: int) -> list[Fraction]:
    """Coefficients of x^1, x^3, ... in tanh x = sum 2^2n (2^2n - 1) B_2n x^(2n-1) / (2n)!."""
    bernoulli = _bernoulli(2 * terms)
    return [Fraction(4**n * (4**n - 1), pymath.factorial(2 * n)) * bernoulli[2 * n]
            for n in range(1, terms + 1)]


def _bernoulli(count: int) -> list[Fraction]:
    """B_0 .. B_count (B_1 = +1/2 convention; only even indices are used)."""
    numbers, row = [], [Fraction(0)] * (count + 1)
    for m in range(count + 1):
        row[m] = Fraction(1, m + 1)
        for j in range(m, 0, -1):
            row[j - 1] = j * (row[j - 1] - row[j])
        numbers.append(row[0])
    return numbers


def _factorials(first: int, last: int) -> list[Fraction]:
    return [Fraction(1, pymath.factorial(n)) for n in range(first, last + 1)]


def _reduce(e: _Emitter, x: SSAValue) -> tuple[SSAValue, SSAValue]:
    """(k, r) with x = k*ln2 + r, |r| <= ln2/2 (about); k as an integer."""
    shifter = e.const(_SHIFTER)
    t = e.add(e.mul(x, e.const(1 / _ln2())), shifter)
    k = e.isub(e.to_bits(t), e.iconst(_bits(_SHIFTER)))
    kf = e.sub(t, shifter)
    hi = e.sub(x, e.mul(kf, e.const(_LN2_HI)))
    return k, e.sub(hi, e.mul(kf, e.const(_LN2_LO)))


def _expm1_reduced(e: _Emitter, r: SSAValue) -> SSAValue:
    """expm1(r) for |r| <= ln2/2: r + r^2 * (1/2! + r/3! + ...)."""
    q = e.horner(r, _factorials(2, e.precision.exp_degree))
    return e.add(r, e.mul(e.mul(r, r), q))


def _scale(e: _Emitter, p: SSAValue, k: SSAValue) -> SSAValue:
    """p * 2^k in two exact steps, so only the last multiplication rounds."""
    k1 = e.half(k)
    return e.mul(e.mul(p, e.pow2(k1)), e.pow2(e.isub(k, k1)))


def _exp(e: _Emitter, x: SSAValue) -> SSAValue:
    k, r = _reduce(e, e.clamp(x, _EXP_LOW, _EXP_HIGH))
    return _scale(e, e.add(e.const(1), _expm1_reduced(e, r)), k)


def _expm1_core(e: _Emitter, x: SSAValue) -> SSAValue:
    """expm1 for x in [_EXPM1_LOW, _EXP_HIGH] or NaN."""
    k, r = _reduce(e, x)
    m = _expm1_reduced(e, r)
    one = e.const(1)
    # -1 <= k <= 52: (m + (1 - 2^-k)) * 2^k, both powers and 1 - 2^-k exact.
    near = e.mul(e.add(m, e.sub(one, e.pow2(e.isub(e.iconst(0), k)))), e.pow2(k))
    far = e.sub(_scale(e, e.add(m, one), k), one)
    near_k = e.icmp("ult", e.iadd(k, e.iconst(1)), e.iconst(_MANTISSA_BITS + 2))
    return e.select(near_k, near, far)


def _keep_tiny(e: _Emitter, x: SSAValue, y: SSAValue) -> SSAValue:
    """x where |x| < _TINY (the function rounds to x there; keeps -0.0), else y."""
    return e.select(e.cmp("olt", e.abs(x), e.const(_TINY)), x, y)


def _expm1(e: _Emitter, x: SSAValue) -> SSAValue:
    return _keep_tiny(e, x, _expm1_core(e, e.clamp(x, _EXPM1_LOW, _EXP_HIGH)))


def _tanh(e: _Emitter, x: SSAValue) -> SSAValue:
    a = e.abs(x)
    high = e.const(_TANH_HIGH)
    m = _expm1_core(e, e.add(a, a))
    large = e.div(m, e.add(m, e.const(2)))  # tanh a = expm1(2a) / (expm1(2a) + 2)
    large = e.select(e.cmp("ogt", a, high), e.const(1), large)
    large = e.select(e.cmp("olt", x, e.const(0)), e.neg(large), large)
    w = e.mul(x, x)
    series = _tanh_series(e.precision.tanh_terms)
    small = e.add(x, e.mul(x, e.mul(w, e.horner(w, series[1:]))))
    return _keep_tiny(e, x, e.select(e.cmp("olt", a, e.const(_TANH_SERIES)), small, large))


def _log(e: _Emitter, x: SSAValue) -> SSAValue:
    p = _MANTISSA_BITS
    # Subnormals: scale by 2^(p+2) into the normal range, correct k afterwards.
    subnormal = e.cmp("olt", x, e.const(2.0 ** (1 - _BIAS)))
    xs = e.select(subnormal, e.mul(x, e.const(2.0 ** (p + 2))), x)
    # x = 2^k * z with z in [sqrt(1/2), sqrt(2)): offset the bits so that mantissas
    # from sqrt(1/2) up carry into the exponent field, read k, remove it from the bits.
    ix = e.to_bits(xs)
    offset = _bits(1.0) - _bits(float(Decimal(0.5).sqrt()))
    k = e.isub(e.shr(e.iadd(ix, e.iconst(offset)), p), e.iconst(_BIAS))
    z = e.from_bits(e.isub(ix, e.shl(k, p)))
    kf = e.sub(e.int_to_float(k), e.select(subnormal, e.const(p + 2), e.const(0)))
    f = e.sub(z, e.const(1))
    s = e.div(f, e.add(e.const(2), f))
    hfsq = e.mul(e.const(0.5), e.mul(f, f))
    w = e.mul(s, s)
    r = e.mul(w, e.horner(w, [Fraction(2, 2 * j + 1)
                              for j in range(1, e.precision.log_terms + 1)]))
    inner = e.add(e.mul(s, e.add(hfsq, r)), e.mul(kf, e.const(_LN2_LO)))
    y = e.sub(e.mul(kf, e.const(_LN2_HI)), e.sub(e.sub(hfsq, inner), f))
    # Zero -> -inf, negative -> NaN, +inf and NaN -> themselves.
    zero = e.const(0)
    special = e.select(e.cmp("olt", x, zero), e.const(pymath.nan), x)
    special = e.select(e.cmp("oeq", x, zero), e.const(-pymath.inf), special)
    finite_positive = e.both(e.cmp("ogt", x, zero), e.cmp("olt", x, e.const(pymath.inf)))
    return e.select(finite_positive, y, special)


def _log1p(e: _Emitter, x: SSAValue) -> SSAValue:
    one = e.const(1)
    u = e.add(one, x)
    correction = e.div(e.sub(e.sub(u, one), x), u)  # the rounding error of u, over u
    finite_nonzero = e.both(e.cmp("one", u, e.const(0)), e.cmp("olt", u, e.const(pymath.inf)))
    correction = e.select(finite_nonzero, correction, e.const(0))
    return _keep_tiny(e, x, e.sub(_log(e, u), correction))


_EXPANSIONS: dict[type[Operation], Callable[[_Emitter, SSAValue], SSAValue]] = {
    math.ExpOp: _exp,
    math.ExpM1Op: _expm1,
    math.TanhOp: _tanh,
    math.LogOp: _log,
    math.Log1pOp: _log1p,
}


def expand(op: Operation) -> tuple[list[Operation], SSAValue] | None:
    """The ops computing math op `op` and the value replacing its result; None when
    `op` is not one of the expanded ops or its type is neither f64 nor f32."""
    expansion = _EXPANSIONS.get(type(op))
    t = op.results[0].type
    if expansion is None or t not in (f64, f32):
        return None
    emitter = _Emitter(_FULL if t == f64 else _SINGLE)
    x = op.operands[0]
    if t == f32:
        x = emitter._add(arith.ExtFOp(x, f64))
    result = expansion(emitter, x)
    if t == f32:
        result = emitter._add(arith.TruncFOp(result, f32))
    return emitter.ops, result


@dataclass(frozen=True)
class ExpandMathPass(ModulePass):
    """Replace exp/expm1/tanh/log/log1p on scalars by vectorizable arith code."""

    name = "expand-math"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for inner in [o for o in op.walk() if type(o) in _EXPANSIONS]:
            expanded = expand(inner)
            if expanded is not None:
                new_ops, result = expanded
                Rewriter.replace_op(inner, new_ops, [result])
