"""memory-plan: liveness of temporaries, their offsets in one arena, the bytes a call uses."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.dialects import func, memref
from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser

import pullback as pb
from pullback.compiler.backends.llvm import compile_function
from pullback.compiler.context import make_context
from pullback.compiler.conversion.array_to_loops import ConvertArrayToLoopsPass
from pullback.compiler.transforms.memory_plan import (
    MemoryPlan,
    MemoryPlanPass,
    assign_offsets,
    plan_memory,
)
from pullback.program import trace_program


def chain(x, a):
    """Matrix products in sequence: each product's input dies right after it."""
    h = x
    for _ in range(4):
        h = pb.tanh(h @ a)
    return pb.sum(h)


def chain_numpy(x, a):
    h = x
    for _ in range(4):
        h = np.tanh(h @ a)
    return np.sum(h)


def reductions(x):
    """Row and column reductions in sequence, each stored for the next."""
    s = pb.sum(pb.exp(x), axis=1, keepdims=True)
    t = pb.max(x / s, axis=0, keepdims=True)
    u = pb.sum(pb.sin(x * t), axis=1, keepdims=True)
    return pb.sum(pb.cos(x + u) * s)


def reductions_numpy(x):
    s = np.sum(np.exp(x), axis=1, keepdims=True)
    t = np.max(x / s, axis=0, keepdims=True)
    u = np.sum(np.sin(x * t), axis=1, keepdims=True)
    return np.sum(np.cos(x + u) * s)


X = np.linspace(-1.0, 1.0, 48 * 48).reshape(48, 48)
A = np.cos(np.arange(48 * 48).reshape(48, 48)) * 0.05


def traced_module(f, *args) -> tuple[ModuleOp, str]:
    """The array module of `f` traced at `args`, and its function's name."""
    program = trace_program(f, args)
    return program.module, program.name


def overlapping_bytes(plan: MemoryPlan) -> list[tuple[int, int]]:
    """Pairs of temporaries whose byte ranges in the arena intersect."""
    ranges = [(o, o + n) for o, n in zip(plan.offsets, plan.sizes, strict=True)]
    return [(i, j) for i, j in itertools.combinations(range(len(ranges)), 2)
            if ranges[i][0] < ranges[j][1] and ranges[j][0] < ranges[i][1]]


def steps_touching(host: func.FuncOp) -> dict[int, list[int]]:
    """Host argument index → the host steps (calls) whose operands include it."""
    args = host.body.block.args
    alias = {a: i for i, a in enumerate(args)}
    touched: dict[int, list[int]] = {i: [] for i in range(len(args))}
    calls = 0
    for op in host.body.block.ops:
        if isinstance(op, memref.CastOp):
            alias[op.dest] = alias[op.source]
        elif isinstance(op, func.CallOp):
            for a in op.arguments:
                if a in alias and calls not in touched[alias[a]]:
                    touched[alias[a]].append(calls)
            calls += 1
    return touched


def test_no_overlap_when_every_buffer_is_live_together():
    plan = assign_offsets([100, 8, 64], [(0, 2), (1, 2), (2, 2)])
    assert overlapping_bytes(plan) == []
    assert all(o % 64 == 0 for o in plan.offsets)
    assert plan.arena_bytes == 128 + 64 + 8  # 100 → 128, 64, then the 8-byte one last
    assert plan.unplanned_bytes == 128 + 64 + 64


def test_buffers_with_disjoint_lifetimes_share_bytes():
    plan = assign_offsets([4096, 4096, 4096], [(0, 1), (1, 2), (2, 3)])
    assert plan.offsets[0] == plan.offsets[2] != plan.offsets[1]
    assert plan.arena_bytes == 2 * 4096 < plan.unplanned_bytes == 3 * 4096


def test_best_fit_picks_the_smallest_gap():
    # A, C, G stay live; B and D die, leaving a 256-byte hole and a 64-byte one.
    sizes = [512, 256, 128, 64, 64, 64]
    intervals = [(0, 9), (0, 1), (0, 9), (0, 1), (0, 9), (5, 6)]
    plan = assign_offsets(sizes, intervals)
    assert plan.offsets[:5] == (0, 512, 768, 896, 960)
    assert plan.offsets[5] == plan.offsets[3]
    assert plan.arena_bytes == 1024


def test_alignment_is_checked():
    with pytest.raises(ValueError, match="power of two"):
        assign_offsets([8], [(0, 0)], alignment=48)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 12), st.integers(0, 6)),
                max_size=14),
       st.sampled_from([8, 64, 256]))
def test_random_plans_never_overlap_live_buffers(rows, alignment):
    sizes = [n for n, _, _ in rows]
    intervals = [(s, s + d) for _, s, d in rows]
    plan = assign_offsets(sizes, intervals, alignment)
    assert all(o % alignment == 0 for o in plan.offsets)
    assert plan.arena_bytes <= plan.unplanned_bytes
    assert plan.arena_bytes >= max(sizes, default=0)
    shared = set()
    for i, j in overlapping_bytes(plan):
        if sizes[i] and sizes[j]:
            (a0, a1), (b0, b1) = intervals[i], intervals[j]
            assert a1 < b0 or b1 < a0
            shared |= {i, j}
    assert plan.shared() == shared


@pytest.mark.parametrize("f, args", [(chain, (X, A)), (reductions, (X,))])
@pytest.mark.parametrize("mode", ["value", "gradient"])
def test_planned_buffers_in_use_together_never_share_bytes(f, args, mode):
    text = pb.compile(f, *args, mode=mode).ir("memory-plan")
    module = Parser(make_context(), text).parse_module()
    host = next(op for op in module.body.block.ops
                if isinstance(op, func.FuncOp) and "pullback.temp_bytes" in op.attributes)
    plan = plan_memory(host)
    first = len(host.body.block.args) - len(plan.sizes)
    touched = steps_touching(host)
    assert plan.sizes, "the example must store temporaries"
    for i, j in overlapping_bytes(plan):
        si, sj = touched[first + i], touched[first + j]
        assert max(si) < min(sj) or max(sj) < min(si), (i, j, si, sj)
    assert [o for o in host.attributes["pullback.temp_offsets"].get_values()] == list(
        plan.offsets)
    assert host.attributes["pullback.arena_bytes"].value.data == plan.arena_bytes
    noalias = ["llvm.noalias" in a.data for a in host.arg_attrs.data[first:]]
    assert noalias == [i not in plan.shared() for i in range(len(plan.sizes))]


def test_a_chain_whose_temporaries_die_early_shares_the_arena():
    compiled = pb.compile(chain, X, A, mode="value")
    mem = compiled.memory
    assert mem.temporaries < mem.unplanned_bytes
    # Each product's output (48x48 f64) dies after the next step: two live at a time.
    assert mem.temporaries == 2 * X.nbytes


@pytest.mark.parametrize("f, ref, args", [(chain, chain_numpy, (X, A)),
                                          (reductions, reductions_numpy, (X,))])
def test_results_with_a_shared_arena(device, f, ref, args):
    compiled = pb.compile(f, *args, mode="value", device=device)
    np.testing.assert_allclose(compiled(*args), ref(*args), rtol=1e-12)
    shifted = tuple(a + 0.25 for a in args)
    np.testing.assert_allclose(compiled(*shifted), ref(*shifted), rtol=1e-12)


def test_gradient_through_a_shared_arena(device):
    compiled = pb.compile(chain, X, A, mode="gradient", device=device)
    dx, _ = compiled(X, A)
    e = np.zeros_like(X)
    e[3, 5] = 1e-6
    fd = (chain_numpy(X + e, A) - chain_numpy(X - e, A)) / 2e-6
    np.testing.assert_allclose(dx[3, 5], fd, rtol=1e-6)
    assert compiled.memory.temporaries <= compiled.memory.unplanned_bytes


def test_report_counts_inputs_and_outputs(device):
    mem = pb.compile(chain, X, A, mode="gradient", device=device).memory
    assert mem.inputs == X.nbytes + A.nbytes
    assert mem.outputs == 8  # the value
    assert mem.gradients == X.nbytes + A.nbytes  # one gradient per input
    assert mem.peak_bytes == mem.inputs + mem.outputs + mem.gradients + mem.temporaries


def _numpy_bytes(snapshot: tracemalloc.Snapshot, file: str) -> int:
    """Bytes of live numpy arrays allocated by code in `file`."""
    arrays = snapshot.filter_traces([tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)])
    mine = arrays.filter_traces([tracemalloc.Filter(True, f"*{file}")])
    return sum(s.size for s in mine.statistics("filename"))


def test_the_cpu_executor_allocates_exactly_the_planned_bytes():
    module, name = traced_module(chain, X, A)
    executor, outputs = "backends/llvm/*", "backends/kernel_level.py"  # the arena: arenas.py
    tracemalloc.start()
    try:
        exe = compile_function(module, name)
        arena = _numpy_bytes(tracemalloc.take_snapshot(), executor)
        outs = exe.run([X, A])
        after_call = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    mem = exe.memory
    assert outs[0].shape == ()
    assert arena == mem.temporaries
    assert _numpy_bytes(after_call, executor) == arena
    assert _numpy_bytes(after_call, outputs) == mem.outputs
    assert arena + mem.outputs == mem.peak_bytes - mem.inputs


def test_the_executor_allocates_exactly_the_planned_device_bytes(device):
    if device != "opencl":  # the CPU executor is counted above, by numpy's own allocations
        return
    import pyopencl

    from pullback.compiler.backends.opencl import compile_function as compile_opencl
    module, name = traced_module(chain, X, A)
    exe = compile_opencl(module, name)
    owners = [b.get_info(pyopencl.mem_info.ASSOCIATED_MEMOBJECT) for b in exe._buffers]
    whole = {b.int_ptr: b.size for b, owner in zip(exe._buffers, owners) if owner is None}
    whole |= {owner.int_ptr: owner.size for owner in owners if owner is not None}
    mem = exe.memory
    assert sum(whole.values()) == mem.peak_bytes
    assert all(o % exe.plan.alignment == 0 for o in exe.plan.offsets)


def test_the_pass_annotates_every_host_function():
    module, name = traced_module(reductions, X)
    ConvertArrayToLoopsPass(function=name).apply(make_context(), module)
    MemoryPlanPass().apply(make_context(), module)
    host = next(op for op in module.body.block.ops
                if isinstance(op, func.FuncOp) and op.sym_name.data == name)
    assert "pullback.arena_bytes" in host.attributes
    assert len(host.attributes["pullback.temp_offsets"].get_values()) == len(
        host.attributes["pullback.temp_bytes"].get_values())


def test_planning_an_unlowered_function_is_an_error():
    module, name = traced_module(reductions, X)
    f = next(op for op in module.body.block.ops if isinstance(op, func.FuncOp))
    with pytest.raises(ValueError, match="bufferize"):
        plan_memory(f)
