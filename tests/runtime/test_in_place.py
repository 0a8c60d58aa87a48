"""In-place writes in traced code: numpy semantics, compiled into `array.assign`.

The reference for every program is the same Python function run eagerly on numpy
arrays (outside a trace the DSL is numpy), which mutates its arguments in place.
"""

from __future__ import annotations

import numpy as np
import pytest

import pullback as pb
from pullback.compiler.dialects.array import AssignOp

O = pb.optimisers


def _close(device: str) -> dict:
    """Sums may be reassociated (vectorised); elementwise results differ by an ulp at most."""
    return {"rtol": 1e-14, "atol": 1e-15} if device == "cpu" else {"rtol": 1e-12, "atol": 1e-12}


def _sub_add(p, g):
    p -= 0.1 * g
    p += 1.0
    return pb.sum(p * g)


def _mul_div_pow(p, g):
    p *= g
    p /= 2.0
    p **= 2
    return pb.mean(p)


def _setitem(p, g):
    p[0] = 7.0
    p[1:, ::2] = g[1:, ::2]
    return pb.sum(p)


def _keeps_old(p, g):
    old = p.copy()
    p *= 2.0
    return pb.sum(old[::-1] * p)


def _swap(p, g):
    old = p.copy()
    p[...] = g
    g[...] = old
    return pb.sum(old)


def _local_only(p, g):
    q = p * 1.0
    q -= g
    return pb.sum(q * q)


def _descend(p, g):
    p -= 0.5 * g


def _increment(x):
    x += 1.0


def _accumulate(x, y):
    x += y


PROGRAMS = [_sub_add, _mul_div_pow, _setitem, _keeps_old, _swap, _local_only]


@pytest.mark.parametrize("fn", PROGRAMS, ids=lambda f: f.__name__)
def test_compiled_writes_equal_numpy_in_place(fn, device):
    rng = np.random.default_rng(0)
    p, g = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    p_ref, g_ref = p.copy(), g.copy()
    want = fn(p_ref, g_ref)
    c = pb.compile(fn, p.copy(), g.copy(), mode="value", device=device)
    out = c(p, g)
    np.testing.assert_allclose(out, want, **_close(device))
    np.testing.assert_allclose(p, p_ref, **_close(device))
    np.testing.assert_allclose(g, g_ref, **_close(device))


def test_a_function_that_writes_compiles_in_value_mode_by_default():
    p, g = np.ones(3), np.ones(3)
    c = pb.compile(_sub_add, p, g)
    assert c.mode == "value"
    assert pb.compile(lambda p: pb.sum(p * p), p).mode == "gradient"


def test_local_writes_emit_no_assign():
    c = pb.compile(_local_only, np.ones(3), np.ones(3))
    assert "array.assign" not in c.ir("trace")


def test_a_write_that_every_read_precedes_needs_no_temporary():
    p, g = np.ones(1000), np.ones(1000)
    c = pb.compile(_descend, p, g)
    assert c.memory.temporaries == 0
    c(p, g)
    np.testing.assert_array_equal(p, np.full(1000, 0.5))


def test_each_call_writes_again():
    p, g = np.zeros(5), np.ones(5)
    c = pb.compile(_accumulate, p, g)
    for k in range(1, 4):
        c(p, g)
        np.testing.assert_array_equal(p, np.full(5, float(k)))


def test_closed_over_arrays_are_written_too(device):
    counter = np.zeros(())
    w = np.arange(3.0)

    def step(x):
        np.copyto(counter, counter + x)
        np.copyto(w, w * x)
        return pb.sum(w)

    c = pb.compile(step, 2.0, device=device)
    for _ in range(3):
        c(2.0)
    assert counter == 6.0
    np.testing.assert_allclose(w, np.arange(3.0) * 8.0, rtol=1e-15)


@pytest.mark.parametrize("rule", [O.Descent(0.1), O.Momentum(0.1, 0.8), O.Nesterov(0.1),
                                  O.Adam(0.01), O.AdamW(0.01, decay=0.1)],
                         ids=lambda r: type(r).__name__)
def test_compiled_optimiser_update_equals_the_eager_update(rule, device):
    rng = np.random.default_rng(3)

    def model():
        return {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}

    m_ref = model()
    m = {k: v.copy() for k, v in m_ref.items()}
    s_ref, s = O.setup(rule, m_ref), O.setup(rule, m)
    grads = [{k: rng.normal(size=v.shape) for k, v in m.items()} for _ in range(4)]
    c = pb.compile(lambda m, g: O.update(s, m, g), m, grads[0], device=device)
    for g in grads:
        O.update(s_ref, m_ref, g)
        c(m, g)
    for k in m:
        np.testing.assert_allclose(m[k], m_ref[k], **_close(device))


def test_interpreter_writes_the_argument():
    from pullback.compiler.interpreter import evaluate

    c = pb.compile(_sub_add, np.ones(3), np.ones(3))
    fn = next(iter(c.program.module.ops))
    assert any(isinstance(op, AssignOp) for op in fn.body.block.ops)
    rng = np.random.default_rng(1)
    p, g = rng.normal(size=3), rng.normal(size=3)
    p_ref, g_ref = p.copy(), g.copy()
    want = _sub_add(p_ref, g_ref)
    (out,) = evaluate(fn, [p, g])
    np.testing.assert_allclose(out, want, rtol=1e-15)
    np.testing.assert_allclose(p, p_ref, rtol=1e-15)


# -- what cannot be written --------------------------------------------------------------


def test_a_number_argument_cannot_be_written():
    c = pb.compile(_increment, 1.0)
    with pytest.raises(ValueError, match="writes its input 0 in place"):
        c(2.0)


def test_a_read_only_or_converted_array_cannot_be_written():
    c = pb.compile(_increment, np.zeros(3))
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable, C-contiguous float64"):
        c(ro)
    with pytest.raises(ValueError, match="writeable, C-contiguous float64"):
        c(np.zeros(6)[::2])


def test_inputs_written_in_place_must_not_alias_other_inputs():
    c = pb.compile(_accumulate, np.zeros(3), np.zeros(3))
    x = np.zeros(3)
    with pytest.raises(ValueError, match="share memory"):
        c(x, x)


def test_in_place_ops_check_shape_and_dtype():
    def grows(x):
        x += np.ones((2, 3))
        return pb.sum(x)

    with pytest.raises(ValueError, match="cannot be written into an array of shape"):
        pb.compile(grows, np.zeros(3))


def test_writes_inside_a_checkpointed_region_are_refused():
    def f(w, x):
        def block(w, x):
            w += 1.0
            return x * w
        return pb.sum(pb.checkpointed(block, w, x))

    with pytest.raises(NotImplementedError, match="outside a region"):
        pb.compile(f, np.ones(3), np.ones(3))


def test_jacobian_of_a_writing_function_writes_once():
    def f(w):
        w += 1.0
        return w * w

    w = np.array([1.0, 2.0])
    J = pb.jacobian(f, w)[0]
    np.testing.assert_allclose(J, np.diag([4.0, 6.0]), rtol=1e-15)
    np.testing.assert_array_equal(w, [2.0, 3.0])


def test_pullback_of_a_writing_function_is_refused():
    with pytest.raises(NotImplementedError, match="writes its inputs in place"):
        pb.pullback(_sub_add, np.ones(3), np.ones(3))
    with pytest.raises(NotImplementedError, match="writes its inputs in place"):
        pb.compile(_sub_add, np.ones(3), np.ones(3), mode="pullback")


def test_gradient_of_a_writing_function_writes_once():
    p, g = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    # _sub_add returns sum((p - 0.1 g + 1) * g): d/dp = g, d/dg = p + 1 - 0.2 g
    dp, dg = pb.gradient(_sub_add, p, g)
    np.testing.assert_allclose(dp, [3.0, 4.0], rtol=1e-15)
    np.testing.assert_allclose(dg, [1.0 + 1 - 0.6, 2.0 + 1 - 0.8], rtol=1e-15)
    np.testing.assert_allclose(p, [1.0 - 0.3 + 1, 2.0 - 0.4 + 1], rtol=1e-15)


def test_partly_overlapping_views_are_caught_and_read_only_aliases_allowed():
    base = np.zeros(8)
    c = pb.compile(_accumulate, np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="writes input 0 in place.*input 1"):
        c(base[:4], base[2:6])
    x, y = np.zeros(4), np.ones(4)
    c(x, y)  # disjoint arrays
    np.testing.assert_array_equal(x, y)
    def add_product(p, a, b):
        p += a * b

    d = pb.compile(add_product, np.zeros(4), np.ones(4), np.ones(4))
    p, a = np.zeros(4), np.full(4, 2.0)
    d(p, a, a)  # the same read-only input twice is fine
    np.testing.assert_array_equal(p, np.full(4, 4.0))
