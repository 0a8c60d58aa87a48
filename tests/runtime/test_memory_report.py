"""The memory report's breakdown: `ad.reverse_begin` splits a derivative into its forward
and backward parts, the lowering classifies each temporary as a residual (a forward
value the backward part reads) or scratch, and `.memory` adds up inputs, outputs,
gradients, residuals and scratch to `peak_bytes`."""

from __future__ import annotations

import numpy as np
import pytest
from finite_differences import central_difference
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, ModuleOp, StringAttr
from xdsl.ir import Block, Region
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException

import pullback as pb
from pullback.compiler.autodiff.forward import JvpPass
from pullback.compiler.autodiff.reverse import AutodiffPass
from pullback.compiler.autodiff.vmap import VmapPass
from pullback.compiler.context import make_context
from pullback.compiler.dialects.ad import ReverseBeginOp
from pullback.compiler.interpreter import evaluate, find_function
from pullback.compiler.passes import get_pass
from pullback.compiler.transforms.memory_kinds import (
    RESIDUAL,
    SCRATCH,
    TEMP_KINDS,
    peak_residual_bytes,
    read_temp_kinds,
    split_at_reverse_begin,
)
from pullback.compiler.transforms.memory_plan import MemoryPlan, MemoryReport
from pullback.dsl.pytree import flatten
from pullback.dsl.trace import Trace
from pullback.mode_pipeline import CLEANUP
from pullback.program import trace_program

RNG = np.random.default_rng(7)
X = RNG.standard_normal((4, 8))
A = RNG.standard_normal((8, 16)) / 3
B = RNG.standard_normal((16, 2)) / 4
F64 = 8


def one_layer(x, a):
    return pb.sum(pb.tanh(x @ a))


def two_layers(x, a, b):
    return pb.sum(pb.tanh(pb.tanh(x @ a) @ b))


# ----------------------------------------------------------------------------
# The marker in the IR
# ----------------------------------------------------------------------------


def _markers(f: func.FuncOp) -> list[int]:
    return [i for i, op in enumerate(f.body.block.ops) if isinstance(op, ReverseBeginOp)]


def _vjp_module(f, *args) -> tuple[ModuleOp, str]:
    program = trace_program(f, args)
    module = program.module.clone()
    AutodiffPass(func=program.name, seed=True).apply(make_context(), module)
    return module, program.name


def test_round_trip() -> None:
    block = Block()
    block.add_ops([ReverseBeginOp(), func.ReturnOp()])
    module = ModuleOp([func.FuncOp("f", ([], []), Region(block))])
    module.verify()
    text = str(module)
    assert "ad.reverse_begin" in text
    parsed = Parser(make_context(), text).parse_module()
    parsed.verify()
    assert parsed.is_structurally_equivalent(module)


def test_a_function_has_at_most_one_marker() -> None:
    block = Block()
    block.add_ops([ReverseBeginOp(), ReverseBeginOp(), func.ReturnOp()])
    module = ModuleOp([func.FuncOp("f", ([], []), Region(block))])
    with pytest.raises(VerifyException, match="at most one, this one has 2"):
        module.verify()


def test_the_marker_belongs_in_a_function() -> None:
    with pytest.raises(VerifyException, match="func.func"):
        ModuleOp([ReverseBeginOp()]).verify()


def test_vjp_marks_where_the_sweep_begins() -> None:
    module, name = _vjp_module(one_layer, X, A)
    primal = [op.name for op in find_function(module, name).body.block.ops][:-1]
    vjp = find_function(module, name + "_vjp")
    (at,) = _markers(vjp)
    assert [op.name for op in vjp.body.block.ops][:at] == primal


def test_cleanup_keeps_the_marker_and_the_order() -> None:
    module, name = _vjp_module(one_layer, X, A)
    ctx = make_context()
    for p in CLEANUP:
        get_pass(p)().apply(ctx, module)
    module.verify()
    primal = [op.name for op in find_function(module, name).body.block.ops][:-1]
    vjp = find_function(module, name + "_vjp")
    (at,) = _markers(vjp)
    # the primal's ops, cleaned alike, still come first; the sweep follows the marker
    assert [op.name for op in vjp.body.block.ops][:at] == primal
    assert at < len(vjp.body.block.ops) - 2


def test_forward_mode_and_batching_keep_the_marker() -> None:
    module, name = _vjp_module(one_layer, X, A)
    JvpPass(func=name + "_vjp").apply(make_context(), module)
    VmapPass(func=name + "_vjp", args=(0,), size=3).apply(make_context(), module)
    module.verify()
    for derived in ("_vjp_jvp", "_vjp_vmap"):
        assert len(_markers(find_function(module, name + derived))) == 1


def test_second_order_keeps_one_marker() -> None:
    module, name = _vjp_module(one_layer, X, A)
    AutodiffPass(func=name + "_vjp", wrt=(0,), cotangents=(1,)).apply(make_context(), module)
    module.verify()
    assert len(_markers(find_function(module, name + "_vjp_vjp"))) == 1


def test_an_inlined_checkpoint_derivative_brings_no_marker() -> None:
    def f(x, a):
        return pb.sum(pb.checkpointed(lambda h: pb.tanh(h @ a), x))

    module, name = _vjp_module(f, X, A)
    module.verify()
    assert len(_markers(find_function(module, name + "_vjp"))) == 1


def test_inlining_a_derivative_into_a_trace_keeps_only_the_first_marker() -> None:
    module, name = _vjp_module(one_layer, X, A)
    vjp = find_function(module, name + "_vjp")
    trace = Trace()
    args = [trace.new_input(X.shape, X.dtype).value, trace.new_input(A.shape, A.dtype).value]
    outputs = trace.inline(vjp, args)
    assert len(outputs) == 3
    trace.inline(vjp, args)
    assert sum(isinstance(op, ReverseBeginOp) for op in trace.block.ops) == 1
    with trace.region() as block:
        trace.inline(vjp, args)
    assert not any(isinstance(op, ReverseBeginOp) for op in block.ops)


def test_a_compiled_training_step_reports_its_saved_activations() -> None:
    rng = np.random.default_rng(0)
    layers = [rng.normal(size=(16, 16)) for _ in range(3)]
    x = rng.normal(size=(4, 16))

    def loss(layers, x):
        for w in layers:
            x = pb.tanh(x @ w)
        return pb.sum(x * x)

    def step(layers, x):
        for w, g in zip(layers, pb.gradient(loss, layers, x)[0], strict=True):
            w -= 0.1 * g

    memory = pb.compile(step, layers, x).memory
    # the three layers' outputs are read by the backward part: at least the first two
    # are saved past the start of the backward pass
    assert memory.residuals >= 2 * 4 * 16 * 8


def test_the_interpreter_ignores_the_marker() -> None:
    module, name = _vjp_module(one_layer, X, A)
    _, dx, da = evaluate(find_function(module, name + "_vjp"), [X, A])
    np.testing.assert_allclose(
        dx, central_difference(lambda x: np.sum(np.tanh(x @ A)), X), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(
        da, central_difference(lambda a: np.sum(np.tanh(X @ a)), A), rtol=1e-6, atol=1e-8)


def test_split_at_the_marker() -> None:
    module, name = _vjp_module(one_layer, X, A)
    assert split_at_reverse_begin(find_function(module, name)) is None
    vjp = find_function(module, name + "_vjp")
    ops = list(vjp.body.block.ops)
    at = _markers(vjp)[0]
    forward = split_at_reverse_begin(vjp)
    assert forward == {r for op in ops[:at] for r in op.results}
    assert not _markers(vjp)


# ----------------------------------------------------------------------------
# Which temporaries are residuals
# ----------------------------------------------------------------------------


def _host(compiled) -> func.FuncOp:
    module = Parser(make_context(), compiled.ir("convert-kernels-to-loops")).parse_module()
    return next(op for op in module.body.block.ops
                if isinstance(op, func.FuncOp) and TEMP_KINDS in op.attributes)


def _kinds(compiled) -> list[str]:
    return [k.data for k in _host(compiled).attributes[TEMP_KINDS].data]


def _temp_bytes(compiled) -> list[int]:
    return [int(v) for v in _host(compiled).attributes["pullback.temp_bytes"].get_values()]


def test_one_layer_saves_the_product() -> None:
    """sum(tanh(x @ a)): the product h = x @ a is a matrix-product result, so it is
    stored. The reduction and dh = 1 - tanh(h)^2 (the backward value, stored as an
    operand of the products dx = dh @ a^T and da = x^T @ dh) share one fused kernel,
    which reads h: h is a residual, dh scratch. Both are live while that kernel runs."""
    c = pb.compile(one_layer, X, A)
    h = X.shape[0] * A.shape[1] * F64
    assert _kinds(c) == [RESIDUAL, SCRATCH]
    assert _temp_bytes(c) == [h, h]
    mem = c.memory
    assert mem.residuals == h
    assert mem.scratch == mem.temporaries - h


def test_two_layers_save_what_the_backward_part_reads() -> None:
    """sum(tanh(tanh(x @ a) @ b)), temporaries in schedule order:
    h1 = x @ a (read only by the kernel computing t1 = tanh(h1): forward, so scratch);
    t1 (read by db = t1^T @ dh2 and by dh1 = dt1 * (1 - t1^2): residual);
    h2 = t1 @ b (read by the kernel of the loss and dh2 = 1 - tanh(h2)^2: residual);
    dh2, dt1 = dh2 @ b^T, dh1 (backward: scratch). The live temporaries take the most
    bytes at the kernel computing dh1, where t1, dt1 and dh1 are live: of those, t1
    is a residual."""
    c = pb.compile(two_layers, X, A, B)
    wide, narrow = X.shape[0] * A.shape[1] * F64, X.shape[0] * B.shape[1] * F64
    assert _kinds(c) == [SCRATCH, RESIDUAL, RESIDUAL, SCRATCH, SCRATCH, SCRATCH]
    assert _temp_bytes(c) == [wide, wide, narrow, narrow, wide, wide]
    assert c.memory.residuals == wide
    assert c.memory.temporaries >= 3 * wide


def test_values_alone_have_no_residuals() -> None:
    c = pb.compile(two_layers, X, A, B, mode="value")
    assert _kinds(c) == [SCRATCH] * 3  # h1, t1, h2
    assert c.memory.residuals == 0 and c.memory.gradients == 0


# ----------------------------------------------------------------------------
# The report adds up
# ----------------------------------------------------------------------------


def _dense(layer, h):
    return pb.tanh(h @ layer["W"] + layer["b"])


def _block(layers, h):
    for layer in layers:
        h = _dense(layer, h)
    return h


def _mlp(blocks: int, layers: int, width: int) -> list:
    rng = np.random.default_rng(blocks * 10 + layers)
    return [[{"W": rng.standard_normal((width, width)) / np.sqrt(width),
              "b": rng.standard_normal(width)} for _ in range(layers)] for _ in range(blocks)]


def _loss(ck: bool):
    def loss(model, x):
        h = x
        for layers in model:
            h = pb.checkpointed(_block, layers, h) if ck else _block(layers, h)
        return pb.mean(h ** 2)
    return loss


def _nbytes(*trees) -> int:
    leaves, _ = flatten(trees)
    return sum(np.asarray(leaf).nbytes for leaf in leaves)


MODEL = _mlp(2, 2, 6)
XM = np.random.default_rng(3).standard_normal((3, 6))
V = np.linspace(-1.0, 1.0, 5)

SQUARE = V.size * V.nbytes  # a Jacobian, a Hessian, or the identity block seeding one

# (name, function, arguments, mode, bytes of seeds (cotangents or tangents the entry
# takes besides the arguments), bytes of results, bytes of derivatives)
PROGRAMS = [
    ("one layer", one_layer, (X, A), "gradient", 0, F64, X.nbytes + A.nbytes),
    ("two layers", two_layers, (X, A, B), "withgradient", 0, F64, _nbytes(X, A, B)),
    ("two layers", two_layers, (X, A, B), "pullback", F64, F64, _nbytes(X, A, B)),
    ("elementwise", lambda x, w: pb.sum(pb.tanh(x) * w), (V, V), "gradient", 0, F64,
     2 * V.nbytes),
    ("mlp", _loss(False), (MODEL, XM), "gradient", 0, F64, _nbytes(MODEL, XM)),
    ("checkpointed mlp", _loss(True), (MODEL, XM), "gradient", 0, F64, _nbytes(MODEL, XM)),
    ("jacobian", lambda x: pb.tanh(x * 2.0) * x, (V,), "jacobian", SQUARE, V.nbytes, SQUARE),
    ("hessian", lambda x: pb.sum(pb.sin(x) * x), (V,), "hessian", SQUARE, 0, SQUARE),
    ("hessian", lambda x: pb.sum(pb.sin(x) * x), (V,), "hessian_reverse", SQUARE, 0, SQUARE),
    ("checkpointed hessian", lambda x: pb.sum(pb.checkpointed(lambda v: pb.sin(v) * v, x)),
     (V,), "hessian", SQUARE, 0, SQUARE),
]
FIRST_ORDER = [p for p in PROGRAMS if p[3] in ("gradient", "withgradient")]


@pytest.mark.parametrize("name, f, args, mode, seed_bytes, result_bytes, gradient_bytes",
                         PROGRAMS, ids=[f"{p[0]}-{p[3]}" for p in PROGRAMS])
def test_peak_is_the_sum_of_the_parts(device, name, f, args, mode, seed_bytes, result_bytes,
                                      gradient_bytes) -> None:
    mem = pb.compile(f, *args, mode=mode, device=device).memory
    assert mem.peak_bytes == (mem.inputs + mem.outputs + mem.gradients + mem.residuals
                              + mem.scratch)
    assert mem.temporaries == mem.residuals + mem.scratch
    assert mem.residuals >= 0 and mem.scratch >= 0
    assert mem.temporaries <= mem.unplanned_bytes
    assert mem.inputs == _nbytes(*args) + seed_bytes
    assert (mem.outputs, mem.gradients) == (result_bytes, gradient_bytes)


@pytest.mark.parametrize("name, f, args, mode, seed_bytes, result_bytes, gradient_bytes",
                         FIRST_ORDER, ids=[p[0] for p in FIRST_ORDER])
def test_values_report_no_residuals_and_no_gradients(device, name, f, args, mode, seed_bytes,
                                                     result_bytes, gradient_bytes) -> None:
    mem = pb.compile(f, *args, mode="value", device=device).memory
    assert (mem.residuals, mem.gradients, mem.outputs) == (0, 0, result_bytes)
    assert mem.scratch == mem.temporaries
    assert mem.peak_bytes == mem.inputs + mem.outputs + mem.scratch


def test_checkpointing_lowers_the_residuals(device) -> None:
    """A 4-block MLP of 2 dense+tanh layers per block, one activation = batch x width
    float64. Plain reverse mode stores every layer's output t_i (an operand of the next
    product) and its backward part reads each (tanh' and the weight gradient): at the
    start of the backward sweep all L - 1 = 7 inner activations are live residuals.
    Checkpointed, the backward part reads from the forward part only what the blocks'
    recomputations start from and what the loss's derivative reads: at most one
    activation per block; the recomputed activations are scratch."""
    blocks, layers, width, batch = 4, 2, 8, 4
    model = _mlp(blocks, layers, width)
    x = np.random.default_rng(0).standard_normal((batch, width))
    act = batch * width * F64
    plain = pb.compile(_loss(False), model, x, device=device).memory
    ck = pb.compile(_loss(True), model, x, device=device).memory
    assert ck.residuals < plain.residuals
    assert plain.residuals >= (blocks * layers - 1) * act
    assert ck.residuals <= blocks * act


# ----------------------------------------------------------------------------
# The pieces of the report
# ----------------------------------------------------------------------------


def test_residuals_are_counted_where_the_temporaries_peak() -> None:
    # live bytes by step: 100 (residual 100), 150 (100), 130 (130), 30 (30)
    sizes, intervals = [100, 50, 30], [(0, 2), (1, 1), (2, 3)]
    assert peak_residual_bytes(sizes, intervals, [RESIDUAL, SCRATCH, RESIDUAL]) == 100
    assert peak_residual_bytes(sizes, intervals, [SCRATCH, SCRATCH, RESIDUAL]) == 0
    # a tie between steps: the one holding more residual bytes
    assert peak_residual_bytes([10, 10], [(0, 0), (1, 1)], [SCRATCH, RESIDUAL]) == 10
    assert peak_residual_bytes([], [], []) == 0


def test_a_plan_without_kinds_is_all_scratch() -> None:
    plan = MemoryPlan((64,), ((0, 0),), (0,), 64, 64)
    mem = MemoryReport.of(plan, [(np.dtype(np.float64), (2,))], [(np.dtype(np.float32), ())])
    assert (mem.inputs, mem.outputs, mem.residuals, mem.scratch) == (16, 4, 0, 64)


def test_gradients_come_out_of_the_outputs() -> None:
    plan = MemoryPlan((64, 32), ((0, 1), (1, 2)), (0, 64), 96, 64, (RESIDUAL, SCRATCH))
    mem = MemoryReport.of(plan, [], [(np.dtype(np.float64), (3,))]).with_gradients(16)
    assert (mem.outputs, mem.gradients, mem.residuals, mem.scratch) == (8, 16, 64, 32)
    with pytest.raises(ValueError, match="between 0 and the output bytes 8, got 9"):
        mem.with_gradients(9)


def test_the_report_prints_as_a_table() -> None:
    mem = pb.compile(two_layers, X, A, B).memory
    lines = str(mem).splitlines()
    assert repr(mem) == str(mem)
    for field in ("inputs", "outputs", "gradients", "residuals", "scratch", "peak_bytes",
                  "temporaries", "unplanned_bytes"):
        (line,) = [ln for ln in lines if ln.split()[0] == field]
        assert f"{getattr(mem, field):,}" in line.split()


def test_bad_kinds_on_a_host_function_are_an_error() -> None:
    host = func.FuncOp("h", ([], []))
    host.attributes[TEMP_KINDS] = ArrayAttr([StringAttr("saved")])
    with pytest.raises(ValueError, match="'residual' or 'scratch' for each of its 1"):
        read_temp_kinds(host, 1)
    assert read_temp_kinds(func.FuncOp("g", ([], [])), 2) == (SCRATCH, SCRATCH)
