"""Messages for calls pullback cannot run: each names what is wrong and what is accepted.

Covered: a compiled function called with arguments of another signature (the argument
path and both sides), bool and constant-only programs, OpenCL asked for where only a
`pyopencl` folder without the module exists, derivatives nested in a traced function,
and Jacobians and Hessians of empty arrays (which are well defined, and computed).
"""

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pytest

import pullback as pb

SIGNATURE = "this compiled function was made for another argument signature"


# -- signature mismatch -----------------------------------------------------------------


def test_batch_size_names_the_argument_and_both_shapes():
    c = pb.compile(lambda w, x: pb.sum(x @ w), np.ones((3, 2)), np.ones((32, 3)))
    with pytest.raises(TypeError, match=rf"{SIGNATURE}: x is a float64 array of shape "
                       r"\(64, 3\), but the function was compiled for a float64 array of "
                       r"shape \(32, 3\)\. Call pb.compile again"):
        c(np.ones((3, 2)), np.ones((64, 3)))


def test_dtype_difference_is_named():
    c = pb.compile(lambda x: pb.sum(x), np.ones(3))
    with pytest.raises(TypeError, match=r"x is a float32 array of shape \(3,\), but the "
                       r"function was compiled for a float64 array of shape \(3,\)"):
        c(np.ones(3, np.float32))


def test_nested_leaf_path():
    def loss(model, batch):
        return sum(pb.sum(layer["w"]) for layer in model["layers"]) + pb.sum(batch)

    model = {"layers": [{"w": np.ones(2)} for _ in range(3)]}
    c = pb.compile(loss, model, np.ones(4))
    model["layers"][2]["w"] = np.ones((2, 2))
    with pytest.raises(TypeError, match=r"model\['layers'\]\[2\]\['w'\] is a float64 array "
                       r"of shape \(2, 2\), but the function was compiled for a float64 "
                       r"array of shape \(2,\)"):
        c(model, np.ones(4))


def test_several_differences_are_listed_and_counted():
    c = pb.compile(lambda *xs: sum(pb.sum(x) for x in xs), *[np.ones(2)] * 5)
    with pytest.raises(TypeError, match=r"xs\[0\] is .*; xs\[1\] is .*; xs\[2\] is .*; "
                       r"and 2 more\."):
        c(*[np.ones(3)] * 5)


def test_extra_and_missing_arguments_are_named():
    c = pb.compile(lambda x, *rest: pb.sum(x), np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match=r"called with 3 arguments, but compiled for 2 "
                       r"\(x, rest\[0\]\); extra: rest\[1\]"):
        c(np.ones(2), np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match=r"called with 1 argument, but compiled for 2 "
                       r"\(x, rest\[0\]\); missing: rest\[0\]"):
        c(np.ones(2))
    plain = pb.compile(lambda x: pb.sum(x), np.ones(2))
    with pytest.raises(TypeError, match=r"extra: args\[1\]"):
        plain(np.ones(2), np.ones(2))


def test_tuple_versus_list_and_lengths():
    c = pb.compile(lambda p: pb.sum(p[0] * p[1]), (np.ones(2), np.ones(2)))
    with pytest.raises(TypeError, match=r"p is a list of 2 entries, but the function was "
                       r"compiled for a tuple of 2 entries"):
        c([np.ones(2), np.ones(2)])
    with pytest.raises(TypeError, match=r"p is a tuple of 3 entries, but the function was "
                       r"compiled for a tuple of 2 entries"):
        c((np.ones(2), np.ones(2), np.ones(2)))
    with pytest.raises(TypeError, match=r"p\[1\] is a tuple of 1 entry, but the function was "
                       r"compiled for a float64 array of shape \(2,\)"):
        c((np.ones(2), (np.ones(2),)))


def test_dict_keys_missing_unexpected_and_reordered():
    c = pb.compile(lambda d: pb.sum(d["a"]) + pb.sum(d["b"]), {"a": np.ones(2), "b": 1.0})
    with pytest.raises(TypeError, match=r"d is a dict with keys \['a', 'c'\], but the "
                       r"function was compiled for keys \['a', 'b'\] \(missing \['b'\]; "
                       r"unexpected \['c'\]\)"):
        c({"a": np.ones(2), "c": 1.0})
    with pytest.raises(TypeError, match=r"compiled for the same keys in the order "
                       r"\['a', 'b'\]"):
        c({"b": 1.0, "a": np.ones(2)})


class Pair(NamedTuple):
    w: np.ndarray
    b: np.ndarray


@dataclass
class State:
    step: np.ndarray


def test_namedtuple_and_dataclass_fields_are_named():
    c = pb.compile(lambda p, s: pb.sum(p.w) + pb.sum(s.step), Pair(np.ones(2), np.ones(1)),
                   State(np.ones(3)))
    with pytest.raises(TypeError, match=r"p\.b is a float64 array of shape \(2,\)"):
        c(Pair(np.ones(2), np.ones(2)), State(np.ones(3)))
    with pytest.raises(TypeError, match=r"s\.step is a float64 array of shape \(4,\)"):
        c(Pair(np.ones(2), np.ones(1)), State(np.ones(4)))


def test_changed_non_array_argument():
    c = pb.compile(lambda x, act: pb.tanh(x) if act == "tanh" else x * 1.0, np.ones(2),
                   "tanh", mode="value")
    with pytest.raises(TypeError, match=r"the non-array argument act is 'relu', but the "
                       r"function was compiled with 'tanh' there"):
        c(np.ones(2), "relu")
    with pytest.raises(TypeError, match=r"act is a float64 array of shape \(2,\), but the "
                       r"function was compiled for the non-array value 'tanh'"):
        c(np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match=r"x is 'abc', but the function was compiled for a "
                       r"float64 array of shape \(2,\)"):
        c("abc", "tanh")


def test_batched_modes_name_the_argument(device):
    c = pb.compile(lambda x, n: x[:n] * 2, np.ones(3), 2, mode="jacobian", device=device)
    np.testing.assert_array_equal(c(np.ones(3), 2)[0], [[2.0, 0, 0], [0, 2.0, 0]])
    with pytest.raises(TypeError, match=r"x is a float64 array of shape \(4,\), but the "
                       r"function was compiled for a float64 array of shape \(3,\)"):
        c(np.ones(4), 2)
    with pytest.raises(TypeError, match=r"argument 1 is the integer 2 in this compiled "
                       r"function .*got 1; call pb.compile again"):
        c(np.ones(3), 1)


# -- bool arguments and constant outputs ------------------------------------------------


def test_gradient_with_a_bool_argument(device):
    """A bool is passed unchanged and has no derivative (spec: "Values, arguments and
    results"), also when no argument is traced at all."""
    assert pb.gradient(lambda b: 1.0 if b else 2.0, True, device=device) == (None,)
    assert pb.withgradient(lambda b: 1.0 if b else 2.0, False, device=device) == (2.0, (None,))
    assert pb.gradient(lambda s: 3.0, "text", device=device) == (None,)
    g = pb.gradient(lambda x, b: pb.sum(x * x) if b else 0.0, np.ones(2), True, device=device)
    np.testing.assert_array_equal(g[0], [2.0, 2.0])
    assert g[1] is None
    with pytest.raises(TypeError, match="gradient needs the function to return a real "
                       "number, got True"):
        pb.gradient(lambda b: b, True, device=device)


def test_constant_float16_output(device):
    assert pb.gradient(lambda b: np.float16(1.5), True, device=device) == (None,)
    val, grad = pb.withgradient(lambda: np.float16(1.5), device=device)
    assert val == 1.5 and grad == ()
    c = pb.compile(lambda s: np.float16(1.5), "a", mode="value", device=device)
    assert c("a") == 1.5
    (j,) = pb.jacobian(lambda x: np.ones(2, np.float16), 1.0, device=device)
    np.testing.assert_array_equal(j, [0.0, 0.0])


# -- OpenCL missing ---------------------------------------------------------------------


def test_opencl_with_only_a_pyopencl_folder_says_what_to_install(tmp_path):
    """`pocl-binary-distribution` without pyopencl leaves a `pyopencl` folder without the
    module, which Python imports as an empty namespace package."""
    (tmp_path / "pyopencl").mkdir()
    script = textwrap.dedent(f"""
        import importlib.machinery, sys

        class OnlyTheFolder:
            @staticmethod
            def find_spec(name, path=None, target=None):
                if name == "pyopencl":
                    return importlib.machinery.PathFinder.find_spec(name, [{str(tmp_path)!r}])
                return None

        sys.meta_path.insert(0, OnlyTheFolder)
        import numpy as np
        import pullback as pb
        from pullback.compiler.backends import opencl
        assert not opencl.available()
        try:
            pb.gradient(lambda x: pb.sum(x), np.ones(2), device="opencl")
        except opencl.OpenCLUnavailableError as e:
            print(e)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PULLBACK_DEVICE": "cpu"}, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "pyopencl is not installed" in run.stdout
    assert 'pip install "pullback[opencl]"' in run.stdout
    assert str(tmp_path / "pyopencl") in run.stdout


# -- derivatives nested in a traced function --------------------------------------------


NESTED = {
    "jacobian": lambda x: pb.sum(pb.jacobian(lambda y: y * 2, x)[0]),
    "withjacobian": lambda x: pb.sum(pb.withjacobian(lambda y: y * 2, x).val),
    "hessian": lambda x: pb.sum(pb.hessian(lambda y: pb.sum(y ** 3), x)),
    "hessian_reverse": lambda x: pb.sum(pb.hessian_reverse(lambda y: pb.sum(y ** 3), x)),
    "diaghessian": lambda x: pb.sum(pb.diaghessian(lambda y: pb.sum(y ** 3), x)[0]),
}


@pytest.mark.parametrize("name", sorted(NESTED))
def test_nested_derivative_names_the_nesting(name):
    with pytest.raises(NotImplementedError, match=rf"pb\.{name} of traced values cannot be "
                       r"nested inside a traced function .* use pb\.gradient or "
                       r"pb\.withgradient there"):
        pb.gradient(NESTED[name], np.ones(2))


def test_nested_jacobian_of_a_closed_over_traced_value():
    with pytest.raises(NotImplementedError, match=r"pb\.jacobian of traced values cannot be "
                       r"nested"):
        pb.compile(lambda x: pb.jacobian(lambda y: y * x, np.ones(2))[0], np.ones(2),
                   mode="value")


def test_jacobian_of_constants_inside_a_trace_still_runs():
    c = pb.compile(lambda x: x * pb.jacobian(lambda y: y * 2, np.ones(2))[0], np.ones(2),
                   mode="value")
    np.testing.assert_array_equal(c(np.ones(2)), 2 * np.eye(2))


# -- empty arrays -----------------------------------------------------------------------


def test_jacobian_of_an_empty_input_or_output(device):
    (j,) = pb.jacobian(lambda x: x * 2, np.ones(0), device=device)
    assert j.shape == (0, 0) and j.dtype == np.float64
    (j,) = pb.jacobian(lambda x: x[:0], np.ones(3), device=device)
    assert j.shape == (0, 3)
    val, (jx, jy) = pb.withjacobian(lambda x, y: x * pb.sum(y), np.ones(2), np.ones((0, 4)),
                                    device=device)
    np.testing.assert_array_equal(val, [0.0, 0.0])
    np.testing.assert_array_equal(jx, np.zeros((2, 2)))
    assert jy.shape == (2, 0)
    c = pb.compile(lambda x: x * 2, np.ones(0), mode="jacobian", device=device)
    assert c(np.ones(0))[0].shape == (0, 0)


def test_hessians_of_an_empty_input(device):
    f = lambda x: pb.sum(x ** 2)  # noqa: E731
    assert pb.hessian(f, np.ones(0), device=device).shape == (0, 0)
    assert pb.hessian_reverse(f, np.ones((0, 2)), device=device).shape == (0, 0)
    (d,) = pb.diaghessian(f, np.ones(0), device=device)
    assert d.shape == (0,)
    dx, dy = pb.diaghessian(lambda x, y: pb.sum(x ** 3) + pb.sum(y), np.array([1.0, 2.0]),
                            np.ones(0), device=device)
    np.testing.assert_allclose(dx, [6.0, 12.0])
    assert dy.shape == (0,)
