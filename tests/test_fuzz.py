"""Random DSL programs, compiled and checked: value against numpy, gradient, forward
mode, Jacobian and Hessian against central finite differences, OpenCL against the CPU.

The quick form of `python benchmarks/fuzz.py`: a fixed, derandomized set of programs
from 1 to 60 ops, so a failure here is the same program on every run (the failing
program's source and inputs are printed by `check`)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from opencl_platform import NO_OPENCL

import pullback as pb
from benchmarks.fuzzing import Program, RandomChooser, check_program, generate, numpy_namespace
from benchmarks.fuzzing.strategies import programs
from pullback.compiler.autodiff import rules
from pullback.compiler.autodiff.rules.table import RuleTable
from pullback.compiler.dialects import array as A

QUICK = settings(max_examples=10, derandomize=True, database=None, deadline=None,
                 print_blob=False, suppress_health_check=list(HealthCheck))


def check(program, devices=("cpu",), **kw):
    outcome = check_program(program, devices, **kw)
    assert not outcome.failures, program.reproducer() + "\n" + "\n".join(
        f"{f.kind} on {f.device}: {f.detail}" for f in outcome.failures)
    return outcome


@QUICK
@given(programs(1, 25))
def test_small_programs_on_cpu(program):
    check(program, jacobian=True)


@pytest.mark.parametrize(("seed", "style"), [(5, "mixed"), (23, "mixed"), (2, "recurrent")])
def test_deep_programs_on_cpu(seed, style):
    # 60 ops; an unrolled loop's deep chains of values read several times once ran out
    # of fusion rounds and left a stored value without a buffer (seed 2, recurrent)
    program = generate(RandomChooser(seed), 60, style)
    outcome = check(program, jvp=True, hessian=False)
    assert "cpu gradient" in outcome.checked


@NO_OPENCL
@pytest.mark.parametrize(("seed", "style"), [(3, "mixed"), (2, "large")])
def test_opencl_matches_cpu(seed, style):
    # "large": arrays of hundreds to thousands of elements, kernels over many work-groups
    program = generate(RandomChooser(seed), 12, style)
    outcome = check(program, ("cpu", "opencl"), jvp=True, hessian=False)
    assert "opencl device" in outcome.checked


def test_programs_run_as_written_on_numpy():
    # the reference is numpy executing the program text; a program is deterministic
    for seed in range(20):
        a, b = generate(RandomChooser(seed), 30), generate(RandomChooser(seed), 30)
        assert a.source() == b.source()
        y = a.function(numpy_namespace())(*a.inputs)
        assert np.all(np.isfinite(y)) and np.shape(y) == a.weights.shape


def test_checks_catch_a_wrong_derivative(monkeypatch):
    # sin with the derivative -cos, in both modes: every derivative check must fail
    program = Program([np.array([0.3, -1.2, 0.7])], ["v0 = pb.sin(x0) * 1.5"], "v0",
                      np.array([1.0, 0.5, 2.0]), 1)
    assert not check_program(program, jacobian=True).failures
    wrong = RuleTable()
    wrong.defderivative(A.SinOp, lambda e, op: e.neg(e.unary(A.CosOp, op.operands[0])))
    monkeypatch.setitem(rules.VJP_RULES, A.SinOp, wrong.vjp[A.SinOp])
    monkeypatch.setitem(rules.JVP_RULES, A.SinOp, wrong.jvp[A.SinOp])
    # The rule tables are patched in memory, not in pullback's sources, so the disk
    # cache's key (which hashes the sources) cannot see the change: compile afresh.
    pb.clear_caches()
    previous = pb.set_disk_cache(False)
    try:
        kinds = {f.kind for f in check_program(program, jacobian=True).failures}
    finally:
        pb.set_disk_cache(previous)
        pb.clear_caches()
    assert {"gradient", "jvp", "jacobian", "hessian"} <= kinds


def test_device_comparison_is_normwise_for_gradients():
    # A device's gradient is compared to the first device's to rtol of the largest
    # derivative of any argument: a derivative that cancels to 0 (here 1581 - 1581)
    # keeps rounding residues of the terms' size on each device, and is not a failure;
    # a real difference of 1e-6 of the largest derivative is.
    from benchmarks.fuzzing.checks import Outcome, _compare_devices, _Results

    program = Program([np.zeros(3), np.zeros(())], ["v0 = x0 * x1"], "v0", np.ones(3), 1)
    cpu = _Results(grads=[np.array([1581.1, -2.0, 0.5]), np.array(-7.3e-12)])
    residue = _Results(grads=[np.array([1581.1, -2.0, 0.5]), np.array(-3.5e-11)])
    outcome = Outcome()
    _compare_devices(outcome, program, ("cpu", "opencl"), {"cpu": cpu, "opencl": residue})
    assert not outcome.failures
    wrong = _Results(grads=[np.array([1581.1, -2.0 + 1.6e-3, 0.5]), np.array(-7.3e-12)])
    outcome = Outcome()
    _compare_devices(outcome, program, ("cpu", "opencl"), {"cpu": cpu, "opencl": wrong})
    assert [f.kind for f in outcome.failures] == ["device"]
