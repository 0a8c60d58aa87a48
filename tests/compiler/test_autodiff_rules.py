"""Every op's VJP and JVP rule against central finite differences (first and second
order, f64 and f32), on the shape cases of the op table and on random shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from op_table import TABLE, Case, OpRow, one_op_module, sample_inputs
from xdsl.dialects import func
from xdsl.dialects.builtin import f32

from pullback.compiler.interpreter import dtype_of

CASES = [(row, case) for row in TABLE for case in row.cases]
IDS = [f"{row.name}-{case.id}" for row, case in CASES]
ELEMENTWISE = [row for row in TABLE if row.elementwise]


def _cotangents(vjp: func.FuncOp, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random values for the cotangent arguments of a `_vjp` function."""
    types = vjp.function_type.inputs.data[n:]
    return [rng.standard_normal(t.get_shape()).astype(dtype_of(t)) for t in types]



@pytest.mark.parametrize(("row", "case"), CASES, ids=IDS)
def test_vjp_f64(row: OpRow, case: Case, rng, vjp_checker) -> None:
    args = sample_inputs(row, case, rng)
    vjp_checker(one_op_module(row, case), "f", args, rng)


@pytest.mark.parametrize(("row", "case"), CASES, ids=IDS)
def test_jvp_f64(row: OpRow, case: Case, rng, jvp_checker) -> None:
    args = sample_inputs(row, case, rng)
    jvp_checker(one_op_module(row, case), "f", args, rng)


@pytest.mark.parametrize(("row", "case"), CASES, ids=IDS)
def test_vjp_and_jvp_f32(row: OpRow, case: Case, rng, vjp_checker, jvp_checker) -> None:
    args = sample_inputs(row, case, rng, np.float32)
    reference = one_op_module(row, case)
    module = one_op_module(row, case, f32)
    vjp_checker(module, "f", args, rng, reference=reference, rtol=1e-3, atol=1e-4)
    jvp_checker(module, "f", args, rng, reference=reference, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(("row", "case"), CASES, ids=IDS)
def test_forward_over_reverse(row: OpRow, case: Case, rng, vjp_checker, jvp_checker) -> None:
    """jvp of f_vjp (Hessian-vector products) against differences of f_vjp."""
    module = one_op_module(row, case)
    args = sample_inputs(row, case, rng)
    vjp = vjp_checker(module, "f", args, rng)
    cts = _cotangents(vjp, len(args), rng)
    jvp_checker(module, "f_vjp", [*args, *cts], rng, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("row", "case"), CASES, ids=IDS)
def test_reverse_over_reverse(row: OpRow, case: Case, rng, vjp_checker) -> None:
    """vjp of f_vjp against differences of f_vjp."""
    module = one_op_module(row, case)
    args = sample_inputs(row, case, rng)
    vjp = vjp_checker(module, "f", args, rng)
    cts = _cotangents(vjp, len(args), rng)
    vjp_checker(module, "f_vjp", [*args, *cts], rng, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("row", ELEMENTWISE, ids=[r.name for r in ELEMENTWISE])
@settings(max_examples=4, deadline=None)
@given(shape=st.lists(st.integers(1, 3), max_size=3).map(tuple), seed=st.integers(0, 2**16))
def test_elementwise_random_shapes(row: OpRow, shape: tuple[int, ...], seed: int,
                                   vjp_checker, jvp_checker) -> None:
    rng = np.random.default_rng(seed)
    case = Case((shape,) * len(row.inputs))
    args = sample_inputs(row, case, rng)
    module = one_op_module(row, case)
    vjp_checker(module, "f", args, rng)
    jvp_checker(module, "f", args, rng)
