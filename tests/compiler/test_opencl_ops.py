"""Every array op on the OpenCL backend, against numpy (the reference interpreter)
and against the LLVM backend, in float64 and float32.

All (op, case) pairs of one float type go into ONE multi-output function, so each
backend compiles a single program per float type (PoCL builds are slow).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from op_table import TABLE, Case, OpRow, sample_inputs
from opencl_platform import NO_OPENCL
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f32, f64, i1, i64
from xdsl.ir import Attribute, Block, Region

from pullback.compiler.backends import llvm, opencl
from pullback.compiler.interpreter import evaluate

pytestmark = NO_OPENCL

CASES = [(row, case) for row in TABLE for case in row.cases]
IDS = [f"{row.name}{case.id}" for row, case in CASES]
FLOATS = {"f64": f64, "f32": f32}


def _element(kind: str, ft: Attribute) -> Attribute:
    return {"float": ft, "int": i64, "mask": i1, "index": i64}[kind]


def _all_ops_module(ft: Attribute) -> tuple[ModuleOp, list[tuple[int, int]]]:
    """`@f` running every case on its own inputs; per case its (first input, output)."""
    types = [TensorType(_element(inp.kind, ft), shape)
             for row, case in CASES for inp, shape in zip(row.inputs, case.shapes, strict=True)]
    block = Block(arg_types=types)
    args = iter(block.args)
    results, spans, first = [], [], 0
    for row, case in CASES:
        ins = [next(args) for _ in row.inputs]
        op = row.build(ins, ft, **case.params)
        block.add_op(op)
        spans.append((first, len(results)))
        first += len(ins)
        results.append(op.results[0])
    block.add_op(func.ReturnOp(*results))
    f = func.FuncOp("f", (types, [r.type for r in results]), Region(block))
    return ModuleOp([f]), spans


@pytest.fixture(scope="module", params=list(FLOATS))
def runs(request: pytest.FixtureRequest) -> dict[str, Any]:
    ft = FLOATS[request.param]
    dtype = np.float64 if ft == f64 else np.float32
    module, spans = _all_ops_module(ft)
    rng = np.random.default_rng(1)
    inputs = [np.asarray(a) for row, case in CASES
              for a in sample_inputs(row, case, rng, dtype)]
    fn = module.body.block.first_op
    assert isinstance(fn, func.FuncOp)
    return {
        "ft": ft, "spans": spans,
        "reference": evaluate(fn, inputs),
        "llvm": llvm.compile_function(module, "f").run(inputs),
        "opencl": opencl.compile_function(module, "f").run(inputs),
    }


def _check(got: np.ndarray, want: np.ndarray, ft: Attribute, what: str) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype, what
    if np.issubdtype(got.dtype, np.floating):
        rtol, atol = (1e-12, 1e-13) if ft == f64 else (1e-5, 1e-6)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_op(runs: dict[str, Any], index: int) -> None:
    row: OpRow
    case: Case
    row, case = CASES[index]
    _, out = runs["spans"][index]
    got = runs["opencl"][out]
    _check(got, runs["reference"][out], runs["ft"], f"{row.name}{case.id} vs numpy")
    _check(got, runs["llvm"][out], runs["ft"], f"{row.name}{case.id} vs LLVM")
