"""Bad input gives a clear error, never a crash or a wrong number."""

import numpy as np
import pytest

import pullback as pb


def test_complex_and_string_arrays_are_rejected_with_what_is_accepted():
    with pytest.raises(TypeError, match="complex"):
        pb.gradient(lambda z: z * 2, 1 + 2j)
    with pytest.raises(TypeError, match="float64, float32, integer and bool"):
        pb.gradient(lambda s: pb.sum(s), np.array(["a", "b"]))


def test_list_is_a_container_not_an_array():
    # a list of numbers is a pytree: one gradient per entry
    assert pb.gradient(lambda v: v[0] * v[1], [2.0, 3.0]) == ([3.0, 2.0],)
    with pytest.raises(TypeError, match="np.array"):
        pb.gradient(lambda v: v[0] + pb.sum(v[1] * [1.0, 2.0]), [np.ones(2), np.ones(2)])


def test_shape_mismatch_through_gradient_names_shapes_and_line():
    with pytest.raises(pb.ShapeError) as e:
        pb.gradient(lambda a, b: pb.sum(a * b), np.ones(3), np.ones(4))
    assert "(3,)" in str(e.value) and "(4,)" in str(e.value)
    assert "test_bad_input.py" in str(e.value)


def test_data_dependent_if_through_gradient():
    def f(x):
        if x > 1:
            return x * 2
        return x

    with pytest.raises(pb.TracerBoolConversionError, match="pb.where"):
        pb.gradient(f, 3.0)


def test_non_callable_and_integer_output():
    with pytest.raises(TypeError, match="callable"):
        pb.gradient(np.ones(3), 1.0)
    with pytest.raises(TypeError, match="floating point"):
        pb.gradient(lambda x: pb.sum(x > 0), np.ones(2))


def test_unknown_device_and_mode():
    with pytest.raises(ValueError, match="available devices"):
        pb.gradient(lambda x: x, 1.0, device="tpu")
    with pytest.raises(ValueError, match="accepted modes"):
        pb.compile(lambda x: x, 1.0, mode="hessian-ish")


def test_compiled_function_rejects_a_new_signature():
    c = pb.compile(lambda x: pb.sum(x ** 2), np.ones(3))
    with pytest.raises(TypeError, match="signature"):
        c(np.ones(4))


def test_print_ir_after_all(monkeypatch, capsys):
    monkeypatch.setenv("PULLBACK_PRINT_IR", "after-all")
    pb.clear_caches()
    pb.gradient(lambda x: pb.sum(pb.cos(x)), np.ones(2))
    err = capsys.readouterr().err
    stages = ("trace", "autodiff", "keep-functions", "drop-derivative-terms", "simplify", "cse",
              "dce", "inline-checkpoints", "drop-eager-updates", "drop-identities",
              "schedule-writes", "fuse", "bufferize", "convert-kernels-to-loops", "memory-plan",
              "expand-math", "host-call-status", "convert-parallel-to-for", "convert-loops-to-llvm")
    at = [err.index(f"// -----// IR Dump After {stage} //----- //") for stage in stages]
    assert at == sorted(at) and "// -----// LLVM IR //----- //" in err
