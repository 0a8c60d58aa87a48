"""Every op of every pullback dialect has what the compiler needs of it.

One test per column, each walking `Array.operations` and `Ad.operations`:

* a VJP rule, a JVP rule and a batching rule (`compiler/autodiff/rules/`);
* an interpreter implementation (`compiler/interpreter.py`);
* a lowering: a module holding the op lowers to the kernel level (`lower_to_kernels`)
  with no `array` or `ad` op left, for every case of its op-table row in f64 and f32
  (and i64 where the op takes integers), or, for ops no row builds, for a traced
  program (differentiated where only the reverse pass makes the op);
* an LLVM table row and an OpenCL table row for every `arith` / `math` op those
  lowerings produce (the LLVM check after `expand-math`, which the CPU path runs);
* a DSL wrapper: tracing the DSL test table (`tests/runtime/dsl_op_table.py`) or
  one of the programs below records the op;
* an op-test row (`tests/compiler/op_table.py`).

An op that does not need a column is listed in `EXEMPT` with the reason; an exemption
for an op that has the entry after all fails too, so the list stays true. The traits
the tables are derived from are checked for consistency at the end.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from op_table import TABLE, one_op_module
from xdsl.dialects import arith, func, math
from xdsl.dialects.builtin import ModuleOp, f32, f64, i64
from xdsl.ir import Attribute, Operation

import pullback as pb
from pullback.compiler.autodiff.reverse import build_vjp
from pullback.compiler.autodiff.rules import JVP_RULES, VJP_RULES
from pullback.compiler.autodiff.rules.batch import BATCH_RULES
from pullback.compiler.backends.kernel_level import lower_to_kernels
from pullback.compiler.backends.opencl.ops import CODE_FOR_OP
from pullback.compiler.context import make_context
from pullback.compiler.conversion.loops_to_llvm import LOOPS_TO_LLVM
from pullback.compiler.conversion.scalar_ops import SCALAR_RULES, scalar_rule
from pullback.compiler.dialects import ad
from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.array_canonicalization import PATTERNS
from pullback.compiler.dialects.combiners import COMBINERS
from pullback.compiler.dialects.traits import (
    Elementwise,
    FloatOnly,
    ReductionWithCombiner,
    combiner_of,
    has,
)
from pullback.compiler.interpreter import IMPLS
from pullback.compiler.transforms.expand_math import ExpandMathPass
from pullback.compiler.transforms.simplify import canonicalization_patterns
from pullback.program import trace_program

OpClass = type[Operation]
OPS: tuple[OpClass, ...] = (*A.Array.operations, *ad.Ad.operations)
TESTS = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------
# Programs for ops that no op-table row builds, and for DSL calls outside the
# DSL test table; each is traced from float64 inputs of shape (2, 3).
# ----------------------------------------------------------------------------

X = np.arange(6.0).reshape(2, 3) / 7.0 + 0.1


def _add_in_place(x: Any) -> Any:
    x += 1.0
    return pb.sum(x)


def _buffer_write(x: Any) -> Any:
    buf = pb.Buffer(x)
    buf[0] = x[1]
    return pb.copy(buf)


_STATE = pb.optimisers.setup(pb.optimisers.Descent(0.5), X)

PROGRAMS: dict[OpClass, Callable[[Any], Any]] = {
    # Numeric tests: tests/runtime/test_in_place.py, test_spec_buffer.py.
    A.AssignOp: _add_in_place,
    A.ConvertOp: lambda x: pb.sum(pb.astype(x, np.float32)),
    A.UpdateSliceOp: _buffer_write,
    # Numeric tests: test_ignore_derivatives.py, test_spec_showgrad_hook.py,
    # test_checkpointed.py, test_eager_update.py (tests/runtime).
    ad.StopGradientOp: lambda x: pb.ignore_derivatives(x) * x,
    ad.CallbackOp: lambda x: pb.showgrad(x) * x,
    ad.HookOp: lambda x: pb.hook(lambda g: g * 2.0, x, compiled=True) * x,
    ad.CheckpointOp: lambda x: pb.checkpointed(pb.sin, x),
    ad.ForwardOp: lambda x: pb.sum(pb.forwarddiff(pb.sin, x)),
    ad.YieldOp: lambda x: pb.checkpointed(pb.sin, x),
    ad.EagerUpdateOp: lambda w: pb.sum(pb.eager_update(_STATE, w, pb.optimisers.update) ** 2),
}
"""Ops the reverse pass makes: the program whose VJP holds them."""
REVERSE_PROGRAMS: dict[OpClass, Callable[[Any], Any]] = {
    ad.CallbackGradOp: lambda x: pb.showgrad(x) * x,
    ad.ReverseBeginOp: lambda x: pb.sum(pb.sin(x)),
}

FORWARD_EXPANDED = ("replaced by plain ops before differentiation: autodiff, jvp and vmap "
                    "expand it first (compiler/autodiff/forward_region.py), as expand-forward "
                    "does")

EXEMPT: dict[str, dict[OpClass, str]] = {
    "VJP rule": {ad.ForwardOp: FORWARD_EXPANDED},
    "JVP rule": {ad.ForwardOp: FORWARD_EXPANDED},
    "lowering": {
        ad.ForwardOp: "replaced by plain ops before lowering: expand-forward is the first pass "
                      "of every mode pipeline of a program that holds one",
    },
    "batching rule": {
        ad.ForwardOp: FORWARD_EXPANDED,
        ad.YieldOp: "a region terminator: batched with its region by its parent op's rule",
        ad.ReverseBeginOp: "has no operands, so vmap copies it unchanged",
    },
    "interpreter impl": {
        A.AssignOp: "evaluate() applies the write when the function returns",
        ad.YieldOp: "a region terminator: its parent op's impl reads it",
        ad.ReverseBeginOp: "a marker with no result: evaluate() skips it",
    },
    "DSL wrapper": {
        A.ConstantOp: "made by the batching rules (index vectors), not by user code",
        A.ScatterAddOp: "the transpose of take, made by its VJP rule",
        ad.CallbackGradOp: "made by the VJP rule of ad.callback",
        ad.ReverseBeginOp: "made by the reverse pass",
    },
    "op-test row": {
        A.AssignOp: "no result; tested through pb in tests/runtime/test_in_place.py",
        **{op: "tested in tests/compiler/test_ad_dialect.py, test_callbacks.py, "
               "test_checkpoint.py, test_forward_region.py and test_eager_update_*ir.py"
           for op in ad.Ad.operations},
    },
}
OPENCL_ELSEWHERE: dict[OpClass, str] = {
    arith.ConstantOp: "written as a literal by backends/opencl/emit.py (constant_literal)",
}

# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def _check(column: str, has_entry: Callable[[OpClass], bool]) -> None:
    """Fail for ops without the entry and not exempt, and for exempt ops that have it."""
    exempt = EXEMPT.get(column, {})
    missing = [op.name for op in OPS if op not in exempt and not has_entry(op)]
    stale = [op.name for op in exempt if has_entry(op)]
    assert not missing, f"ops without a {column}: {', '.join(missing)}"
    assert not stale, f"exempt from '{column}' but have one (drop the exemption): {stale}"


def _trace(fn: Callable[[Any], Any]) -> ModuleOp:
    return trace_program(fn, (X.copy(),)).module


def _traced_reverse(fn: Callable[[Any], Any]) -> tuple[ModuleOp, str]:
    module = _trace(fn)
    f = next(op for op in module.ops if isinstance(op, func.FuncOp))
    vjp = build_vjp(module, f)
    return module, vjp.sym_name.data


def _row_types(op: OpClass) -> tuple[Attribute, ...]:
    """The element types an op's row is lowered at: i64 too where the op takes integers."""
    integers = (has(op, Elementwise) and not has(op, FloatOnly) and op is not A.ConvertOp
                or has(op, ReductionWithCombiner))
    return (f64, f32, i64) if integers else (f64, f32)


def _lowering_inputs(op: OpClass) -> Iterator[tuple[ModuleOp, str]]:
    """Modules holding `op` and the function to lower."""
    for row in TABLE:
        if row.op is op:
            for case in row.cases:
                for el in _row_types(op):
                    yield one_op_module(row, case, el), "f"
    if op in PROGRAMS:
        yield _trace(PROGRAMS[op]), "f"
    if op in REVERSE_PROGRAMS:
        yield _traced_reverse(REVERSE_PROGRAMS[op])


@functools.cache
def _lowered() -> dict[OpClass, tuple[str | None, frozenset[OpClass]]]:
    """Per op: the error of lowering its modules (None: all lowered) and the arith/math
    ops the lowered modules hold (after expand-math too)."""
    out: dict[OpClass, tuple[str | None, frozenset[OpClass]]] = {}
    for op in OPS:
        error: str | None = None
        scalar: set[OpClass] = set()
        inputs = list(_lowering_inputs(op))
        if not inputs:
            error = "no module to lower (add an op-table row or a program above)"
        for module, name in inputs:
            try:
                kernel = lower_to_kernels(module, name, False).module
            except Exception as exc:  # noqa: BLE001 - reported as the column's failure
                error = f"{type(exc).__name__}: {exc}"
                break
            left = {o.name for o in kernel.walk() if o.name.split(".")[0] in ("array", "ad")}
            if left:
                error = f"left {sorted(left)} in kernel-level IR"
                break
            scalar |= _scalar_ops(kernel)
            ExpandMathPass().apply(make_context(), kernel)
            scalar |= _scalar_ops(kernel)
        out[op] = (error, frozenset(scalar))
    return out


def _scalar_ops(module: ModuleOp) -> set[OpClass]:
    return {type(o) for o in module.walk() if o.dialect_name() in (arith.Arith.name,
                                                                     math.Math.name)}


def _recorded(fn: Callable[..., Any], n: int, shape: tuple[int, ...]) -> set[OpClass]:
    args = tuple(np.full(shape, 0.5 + 0.25 * i) for i in range(n))
    return {type(o) for o in trace_program(fn, args).module.walk()}


@functools.cache
def _dsl_recorded() -> frozenset[OpClass]:
    """The op classes that tracing the DSL test table and `PROGRAMS` records."""
    table = importlib.import_module("tests.runtime.dsl_op_table")
    seen: set[OpClass] = set()
    for fn, n, _domain in table.ALL.values():
        seen |= _recorded(fn, n, (2, 3))
    for fn in PROGRAMS.values():
        seen |= _recorded(fn, 1, (2, 3))
    return frozenset(seen)


# ----------------------------------------------------------------------------
# The columns
# ----------------------------------------------------------------------------


def test_vjp_rule() -> None:
    _check("VJP rule", lambda op: op in VJP_RULES)


def test_jvp_rule() -> None:
    _check("JVP rule", lambda op: op in JVP_RULES)


def test_batching_rule() -> None:
    _check("batching rule", lambda op: op in BATCH_RULES)


def test_interpreter_impl() -> None:
    _check("interpreter impl", lambda op: op in IMPLS)


def test_op_test_row() -> None:
    rows = {row.op for row in TABLE}
    _check("op-test row", lambda op: op in rows)
    for reason in EXEMPT["op-test row"].values():
        for word in reason.replace(",", " ").split():
            if word.startswith("tests/"):
                assert (TESTS.parent / word).exists(), f"{word} named in an exemption is gone"


def test_dsl_wrapper() -> None:
    _check("DSL wrapper", lambda op: op in _dsl_recorded())


def test_lowering() -> None:
    exempt = EXEMPT["lowering"]
    errors = [f"{op.name}: {err}" for op, (err, _) in _lowered().items()
              if err is not None and op not in exempt]
    assert not errors, "ops that do not lower to loops:\n" + "\n".join(errors)
    stale = [op.name for op in exempt if _lowered()[op][0] is None]
    assert not stale, f"exempt from 'lowering' but lower (drop the exemption): {stale}"


def test_llvm_rows_for_produced_scalar_ops() -> None:
    llvm_rows = {cls for table in LOOPS_TO_LLVM for cls in table}
    missing = sorted({f"{op.name} -> {s.name}" for op, (_, produced) in _lowered().items()
                      for s in produced if s not in llvm_rows})
    assert not missing, ("scalar ops without an LLVM lowering row (compiler/conversion/"
                         "{arith,math}_to_llvm.py):\n" + "\n".join(missing))


def test_opencl_rows_for_produced_scalar_ops() -> None:
    missing = sorted({f"{op.name} -> {s.name}" for op, (_, produced) in _lowered().items()
                      for s in produced if s not in CODE_FOR_OP and s not in OPENCL_ELSEWHERE})
    assert not missing, ("scalar ops without an OpenCL row (CODE_FOR_OP in "
                         "compiler/backends/opencl/ops.py):\n" + "\n".join(missing))


# ----------------------------------------------------------------------------
# The traits the tables derive from
# ----------------------------------------------------------------------------


def test_elementwise_ops_have_a_scalar_rule() -> None:
    """Each Elementwise op has one scalar rule: the standard ops its trait names, or a
    SCALAR_RULES row, never both, and no other op has one."""
    elementwise = {op for op in OPS if has(op, Elementwise)}
    missing = sorted(op.name for op in elementwise if scalar_rule(op) is None)
    assert not missing, f"Elementwise ops without a scalar rule (scalar_ops.py): {missing}"
    both = sorted(op.name for op in SCALAR_RULES if op.get_trait(Elementwise).float_op)
    assert not both, f"Elementwise ops naming a standard op and having a SCALAR_RULES row: {both}"
    stray = sorted(op.name for op in OPS if op not in elementwise and scalar_rule(op))
    assert not stray, f"scalar rules for ops that are not Elementwise: {stray}"


@pytest.mark.parametrize("op", [op for op in OPS if has(op, ReductionWithCombiner)],
                         ids=lambda op: op.name)
def test_combiner_is_in_the_table(op: OpClass) -> None:
    assert COMBINERS[combiner_of(op).name] is combiner_of(op)


def test_every_pattern_is_reachable_from_its_roots() -> None:
    """Each canonicalization pattern is attached (via the op's trait) to every op it names."""
    for pattern in PATTERNS:
        for root in pattern.roots:
            assert pattern in canonicalization_patterns(root), (
                f"{type(pattern).__name__} rewrites '{root.name}', which lacks the "
                "ArrayCanonicalization trait")

