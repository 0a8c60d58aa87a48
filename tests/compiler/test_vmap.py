"""The `vmap` pass: every batching rule against a loop of the unbatched function, run by
the reference interpreter, on the op table's shape cases; the rules with their own
index arithmetic also compiled through LLVM."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from op_table import TABLE, OpRow, one_op_module, sample_inputs
from xdsl.dialects.builtin import ModuleOp

from pullback.compiler.autodiff.rules.batch import BATCH_RULES
from pullback.compiler.autodiff.vmap import VmapPass, build_vmap
from pullback.compiler.backends.llvm import compile_function
from pullback.compiler.context import make_context
from pullback.compiler.dialects.array import Array
from pullback.compiler.interpreter import evaluate_module, find_function
from pullback.compiler.passes import parse_pipeline

B = 3
CASES = [
    pytest.param(row, case, id=f"{row.name}{case.id}")
    for row in TABLE for case in row.cases if row.inputs
]


def _subsets(n: int) -> list[tuple[int, ...]]:
    """Each operand alone, and all together (every subset for up to two operands)."""
    if n <= 2:
        return [s for k in range(1, n + 1) for s in itertools.combinations(range(n), k)]
    return [(i,) for i in range(n)] + [tuple(range(n))]


def _stacked_inputs(row: OpRow, case, batched: tuple[int, ...], rng) -> tuple[list, list]:
    """Inputs of each batch element, and the inputs of the batched function."""
    draws = [sample_inputs(row, case, rng) for _ in range(B)]
    per_element = [
        [draws[b][i] if i in batched else draws[0][i] for i in range(len(row.inputs))]
        for b in range(B)
    ]
    stacked = [np.stack([d[i] for d in draws]) if i in batched else draws[0][i]
               for i in range(len(row.inputs))]
    return per_element, stacked


def _batched_module(row: OpRow, case, batched: tuple[int, ...]) -> ModuleOp:
    module = one_op_module(row, case)
    build_vmap(module, find_function(module, "f"), batched, B)
    module.verify()
    return module


def _loop(module: ModuleOp, per_element: list) -> np.ndarray:
    return np.stack([evaluate_module(module, "f", args)[0] for args in per_element])


def test_every_op_has_a_batching_rule() -> None:
    missing = [op.name for op in Array.operations if op not in BATCH_RULES]
    assert not missing, f"no batching rule for {missing}"


@pytest.mark.parametrize(("row", "case"), CASES)
def test_rule_matches_loop(row: OpRow, case) -> None:
    rng = np.random.default_rng(7)
    for batched in _subsets(len(row.inputs)):
        module = _batched_module(row, case, batched)
        per_element, stacked = _stacked_inputs(row, case, batched, rng)
        (got,) = evaluate_module(module, "f_vmap", stacked)
        want = _loop(module, per_element)
        assert got.shape == want.shape, batched
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13,
                                   err_msg=f"batched operands {batched}")


COMPILED = ["take", "scatter_add", "matmul", "cumsum", "broadcast", "update_slice"]


@pytest.mark.parametrize(
    ("row", "case"),
    [p for p in CASES if p.values[0].name in COMPILED],
)
def test_rule_compiled_matches_loop(row: OpRow, case) -> None:
    rng = np.random.default_rng(11)
    for batched in _subsets(len(row.inputs)):
        module = _batched_module(row, case, batched)
        per_element, stacked = _stacked_inputs(row, case, batched, rng)
        want = _loop(module, per_element)
        (got,) = compile_function(module, "f_vmap").run(stacked)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12,
                                   err_msg=f"batched operands {batched}")


def _parse(text: str) -> ModuleOp:
    from xdsl.parser import Parser

    return Parser(make_context(), text).parse_module()


TWO_RESULTS = """
func.func @f(%x: tensor<3xf64>, %w: tensor<3xf64>) -> (tensor<3xf64>, tensor<f64>) {
  %0 = array.sin %x : tensor<3xf64>
  %1 = array.mul %0, %w : tensor<3xf64>
  %2 = array.reduce_sum %w {axes = array<i64: 0>} : tensor<3xf64> -> tensor<f64>
  func.return %1, %2 : tensor<3xf64>, tensor<f64>
}
"""


def test_unbatched_values_stay_unbatched_and_results_broadcast() -> None:
    module = _parse(TWO_RESULTS)
    parse_pipeline("vmap{func=f args=0 size=4}").apply(make_context(), module)
    module.verify()
    g = find_function(module, "f_vmap")
    ops = [op.name for op in g.body.block.ops]
    # the sum over w does not depend on x: computed once, then broadcast
    (reduce,) = [op for op in g.body.block.ops if op.name == "array.reduce_sum"]
    assert str(reduce.results[0].type) == "tensor<f64>"
    assert ops[-2:] == ["array.broadcast", "func.return"]
    assert [str(t) for t in g.function_type.outputs.data] == [
        "tensor<4x3xf64>", "tensor<4xf64>"]
    assert [int(v) for v in g.attributes["pullback.batched_results"].get_values()] == [0, 1]
    x = np.arange(12.0).reshape(4, 3)
    w = np.array([1.0, 2.0, -1.0])
    y, s = evaluate_module(module, "f_vmap", [x, w])
    np.testing.assert_allclose(y, np.sin(x) * w)
    np.testing.assert_allclose(s, np.full(4, 2.0))


def test_broadcast_false_keeps_unbatched_results() -> None:
    module = _parse(TWO_RESULTS)
    VmapPass(func="f", args=(0,), size=2, broadcast=False).apply(make_context(), module)
    g = find_function(module, "f_vmap")
    assert [str(t) for t in g.function_type.outputs.data] == ["tensor<2x3xf64>", "tensor<f64>"]
    assert [int(v) for v in g.attributes["pullback.batched_results"].get_values()] == [0]


def test_matmul_folds_batch_into_rows() -> None:
    module = _parse("""
    func.func @f(%a: tensor<2x3xf64>, %b: tensor<3x4xf64>) -> tensor<2x4xf64> {
      %0 = array.matmul %a, %b : tensor<2x3xf64>, tensor<3x4xf64> -> tensor<2x4xf64>
      func.return %0 : tensor<2x4xf64>
    }""")
    build_vmap(module, find_function(module, "f"), [0], 5)
    (mm,) = [op for op in find_function(module, "f_vmap").body.block.ops
             if op.name == "array.matmul"]
    assert str(mm.results[0].type) == "tensor<10x4xf64>"


@pytest.mark.parametrize(("spec", "message"), [
    ("vmap{func=f args=2 size=3}", "distinct indices below 2"),
    ("vmap{func=f args=0,0 size=3}", "distinct indices"),
    ("vmap{func=f args=0 size=0}", "batch size of at least 1"),
    ("vmap{func=f size=3}", "at least one argument"),
    ("vmap{args=0 size=3}", "needs the function"),
    ("vmap{func=g args=0 size=3}", "no function @g"),
])
def test_bad_options(spec: str, message: str) -> None:
    module = _parse(TWO_RESULTS)
    with pytest.raises(ValueError, match=message):
        parse_pipeline(spec).apply(make_context(), module)


def test_result_prints_and_parses_back() -> None:
    module = _parse(TWO_RESULTS)
    VmapPass(func="f", args=(0, 1), size=2).apply(make_context(), module)
    again = _parse(str(module))
    again.verify()
    assert str(again) == str(module)
