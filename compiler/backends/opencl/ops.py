"""`code_for_op`: one row per scalar `arith` / `math` op, giving its OpenCL C expression.

Each rule takes the op and the C names of its operands and returns an expression of
the result's C type. Structured ops (`scf`, `memref`) are written by `emit.py`.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.dialects import arith, math
from xdsl.ir import Operation

from pullback.compiler.backends.opencl.c_types import c_type, int_width, unsigned_type

Rule = Callable[[Operation, list[str]], str]

# Helpers every program defines (see `PRELUDE`).
PRELUDE = """\
#define PB_MAXIMUM(a, b) (isnan(a) ? (a) : isnan(b) ? (b) : fmax((a), (b)))
#define PB_MINIMUM(a, b) (isnan(a) ? (a) : isnan(b) ? (b) : fmin((a), (b)))
inline long pb_floordiv(long a, long b) {
    long q = a / b;
    return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}
inline long pb_ceildiv(long a, long b) {
    long q = a / b;
    return (q * b != a && ((a < 0) == (b < 0))) ? q + 1 : q;
}
inline long pb_ipow(long x, long n) {
    long r = 1;
    for (; n > 0; n >>= 1) { if (n & 1) { r *= x; } x *= x; }
    return r;
}
"""


def _rt(op: Operation) -> str:
    return c_type(op.results[0].type)


def _binary(symbol: str) -> Rule:
    return lambda op, a: f"({a[0]} {symbol} {a[1]})"


def _bitwise(symbol: str) -> Rule:
    """Bitwise ops; on `i1` the `int` result of C's promotion is cast back."""
    def rule(op: Operation, a: list[str]) -> str:
        return f"(({_rt(op)})({a[0]} {symbol} {a[1]}))"
    return rule


def _unsigned(symbol: str) -> Rule:
    def rule(op: Operation, a: list[str]) -> str:
        u = unsigned_type(op.operands[0].type)
        return f"(({_rt(op)})(({u}){a[0]} {symbol} ({u}){a[1]}))"
    return rule


def _call(fn: str) -> Rule:
    return lambda op, a: f"{fn}({', '.join(a)})"


def _unsigned_call(fn: str) -> Rule:
    def rule(op: Operation, a: list[str]) -> str:
        u = unsigned_type(op.operands[0].type)
        return f"(({_rt(op)}){fn}({', '.join(f'({u}){x}' for x in a)}))"
    return rule


def _cast(op: Operation, a: list[str]) -> str:
    return f"(({_rt(op)}){a[0]})"


def _cast_unsigned_source(op: Operation, a: list[str]) -> str:
    return f"(({_rt(op)})({unsigned_type(op.operands[0].type)}){a[0]})"


def _sitofp(op: Operation, a: list[str]) -> str:
    if int_width(op.operands[0].type) == 1:
        return f"({a[0]} ? ({_rt(op)})-1 : ({_rt(op)})0)"
    return _cast(op, a)


def _fptoui(op: Operation, a: list[str]) -> str:
    return f"(({_rt(op)})({unsigned_type(op.results[0].type)}){a[0]})"


def _trunci(op: Operation, a: list[str]) -> str:
    if int_width(op.results[0].type) == 1:
        return f"(({a[0]} & 1) != 0)"
    return _cast(op, a)


def _bitcast(op: Operation, a: list[str]) -> str:
    return f"as_{_rt(op)}({a[0]})"


def _absi(op: Operation, a: list[str]) -> str:
    return f"(({_rt(op)})abs({a[0]}))"


def _fpowi(op: Operation, a: list[str]) -> str:
    return f"pown({a[0]}, (int){a[1]})"


def _ipowi(op: Operation, a: list[str]) -> str:
    return f"(({_rt(op)})pb_ipow((long){a[0]}, (long){a[1]}))"


def _signed_helper(fn: str) -> Rule:
    return lambda op, a: f"(({_rt(op)}){fn}((long){a[0]}, (long){a[1]}))"


_CMPF = {
    1: "({0} == {1})", 2: "({0} > {1})", 3: "({0} >= {1})", 4: "({0} < {1})",
    5: "({0} <= {1})", 6: "({0} < {1} || {0} > {1})", 7: "(!isunordered({0}, {1}))",
    8: "(!({0} < {1} || {0} > {1}))", 9: "(!({0} <= {1}))", 10: "(!({0} < {1}))",
    11: "(!({0} >= {1}))", 12: "(!({0} > {1}))", 13: "({0} != {1})",
    14: "(isunordered({0}, {1}) != 0)", 0: "false", 15: "true",
}
_CMPI = {0: "==", 1: "!=", 2: "<", 3: "<=", 4: ">", 5: ">=", 6: "<", 7: "<=", 8: ">", 9: ">="}


def _cmpf(op: Operation, a: list[str]) -> str:
    assert isinstance(op, arith.CmpfOp)
    return _CMPF[op.predicate.value.data].format(*a)


def _cmpi(op: Operation, a: list[str]) -> str:
    assert isinstance(op, arith.CmpiOp)
    pred = op.predicate.value.data
    if pred >= 6:
        u = unsigned_type(op.operands[0].type)
        return f"(({u}){a[0]} {_CMPI[pred]} ({u}){a[1]})"
    return f"({a[0]} {_CMPI[pred]} {a[1]})"


def _select(op: Operation, a: list[str]) -> str:
    return f"({a[0]} ? {a[1]} : {a[2]})"


def _negf(op: Operation, a: list[str]) -> str:
    return f"(-{a[0]})"


_MATH_CALLS: dict[type[Operation], str] = {
    math.AbsFOp: "fabs", math.AcosOp: "acos", math.AcoshOp: "acosh", math.AsinOp: "asin",
    math.AsinhOp: "asinh", math.AtanOp: "atan", math.AtanhOp: "atanh", math.Atan2Op: "atan2",
    math.CbrtOp: "cbrt", math.CeilOp: "ceil", math.CopySignOp: "copysign", math.CosOp: "cos",
    math.CoshOp: "cosh", math.ErfOp: "erf", math.Exp2Op: "exp2", math.ExpM1Op: "expm1",
    math.ExpOp: "exp", math.FloorOp: "floor", math.FmaOp: "fma", math.Log10Op: "log10",
    math.Log1pOp: "log1p", math.Log2Op: "log2", math.LogOp: "log", math.PowFOp: "pow",
    math.RoundEvenOp: "rint", math.RoundOp: "round", math.RsqrtOp: "rsqrt", math.SinOp: "sin",
    math.SinhOp: "sinh", math.SqrtOp: "sqrt", math.TanOp: "tan", math.TanhOp: "tanh",
    math.TruncOp: "trunc",
}

CODE_FOR_OP: dict[type[Operation], Rule] = {
    # integer arithmetic
    arith.AddiOp: _binary("+"), arith.SubiOp: _binary("-"), arith.MuliOp: _binary("*"),
    arith.DivSIOp: _binary("/"), arith.RemSIOp: _binary("%"),
    arith.DivUIOp: _unsigned("/"), arith.RemUIOp: _unsigned("%"),
    arith.FloorDivSIOp: _signed_helper("pb_floordiv"),
    arith.CeilDivSIOp: _signed_helper("pb_ceildiv"),
    arith.AndIOp: _bitwise("&"), arith.OrIOp: _bitwise("|"), arith.XOrIOp: _bitwise("^"),
    arith.ShLIOp: _binary("<<"), arith.ShRSIOp: _binary(">>"), arith.ShRUIOp: _unsigned(">>"),
    arith.MaxSIOp: _call("max"), arith.MinSIOp: _call("min"),
    arith.MaxUIOp: _unsigned_call("max"), arith.MinUIOp: _unsigned_call("min"),
    arith.CmpiOp: _cmpi,
    # float arithmetic
    arith.AddfOp: _binary("+"), arith.SubfOp: _binary("-"), arith.MulfOp: _binary("*"),
    arith.DivfOp: _binary("/"), arith.NegfOp: _negf,
    arith.MaximumfOp: _call("PB_MAXIMUM"), arith.MinimumfOp: _call("PB_MINIMUM"),
    arith.MaxnumfOp: _call("fmax"), arith.MinnumfOp: _call("fmin"),
    arith.CmpfOp: _cmpf,
    arith.SelectOp: _select,
    # casts
    arith.IndexCastOp: _cast,
    arith.ExtSIOp: _cast, arith.ExtUIOp: _cast_unsigned_source, arith.TruncIOp: _trunci,
    arith.SIToFPOp: _sitofp, arith.UIToFPOp: _cast_unsigned_source,
    arith.FPToSIOp: _cast, arith.FPToUIOp: _fptoui,
    arith.ExtFOp: _cast, arith.TruncFOp: _cast, arith.BitcastOp: _bitcast,
    # math
    **{cls: _call(fn) for cls, fn in _MATH_CALLS.items()},
    math.AbsIOp: _absi, math.FPowIOp: _fpowi, math.IPowIOp: _ipowi,
    math.CtPopOp: _call("popcount"), math.CountLeadingZerosOp: _call("clz"),
}


def code_for_op(op: Operation, operands: list[str]) -> str:
    """The C expression computing the single result of scalar op `op`."""
    rule = CODE_FOR_OP.get(type(op))
    if rule is None:
        raise NotImplementedError(
            f"the OpenCL backend has no rule for '{op.name}'; add one to CODE_FOR_OP in "
            "compiler/backends/opencl/ops.py"
        )
    return rule(op, operands)
