"""Tracing errors: clear messages that point at the user's line."""

import numpy as np
import pytest

import pullback as pb
from pullback.dsl.trace import Trace, tracing


def trace_with(shape, fn):
    t = Trace()
    with tracing(t):
        x = t.new_input(shape, np.dtype(np.float64))
        return fn(x)


def test_if_on_traced_value_points_at_user_line_and_suggests_where():
    def f(x):
        if x[0] > 0:  # the offending line
            return x
        return -x

    with pytest.raises(pb.TracerBoolConversionError) as e:
        trace_with((3,), f)
    msg = str(e.value)
    assert "test_trace_errors.py" in msg and "if x[0] > 0" in msg and "pb.where" in msg


def test_shape_mismatch_names_both_shapes_and_line():
    with pytest.raises(pb.ShapeError) as e:
        trace_with((3,), lambda x: x + np.ones(4))
    msg = str(e.value)
    assert "(3,)" in msg and "(4,)" in msg and "test_trace_errors.py" in msg


def test_matmul_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 3\)"):
        trace_with((2, 3), lambda x: x @ x)


def test_unsupported_numpy_function_is_named():
    with pytest.raises(TypeError, match="numpy.fft"):
        trace_with((4,), lambda x: np.fft.fft(x))
    with pytest.raises(TypeError, match="numpy.floor"):
        trace_with((4,), lambda x: np.floor(x))
    with pytest.raises(TypeError, match="numpy.add.reduce"):
        trace_with((4,), lambda x: np.add.reduce(x))


def test_concrete_value_requests_fail_clearly():
    with pytest.raises(TypeError, match="float"):
        trace_with((), lambda x: float(x))
    with pytest.raises(TypeError, match="numpy array"):
        trace_with((2,), lambda x: np.asarray(x))


def test_bool_mask_indexing_suggests_where():
    with pytest.raises(IndexError, match="pb.where"):
        trace_with((3,), lambda x: x[x > 0])


def test_index_out_of_bounds():
    with pytest.raises(IndexError, match="out of bounds"):
        trace_with((3,), lambda x: x[3])
    with pytest.raises(IndexError, match="too many indices"):
        trace_with((3,), lambda x: x[0, 0])


def test_numpy_spellings_trace():
    def f(x):
        return np.sum(np.tanh(x) * np.exp(x), axis=0)

    out = trace_with((3, 2), f)
    assert isinstance(out, pb.Tracer) and out.shape == (2,)


def test_promotion_follows_numpy():
    t = Trace()
    with tracing(t):
        f32 = t.new_input((2,), np.dtype(np.float32))
        i64 = t.new_input((2,), np.dtype(np.int64))
        assert (f32 * 2.0).dtype == np.float32
        assert (f32 * np.ones(2)).dtype == np.float64
        assert (i64 * 2).dtype == np.int64
        assert (i64 / 2).dtype == np.float64
        assert (i64 * 0.5).dtype == np.float64
        assert (i64 + f32).dtype == np.float64
        assert pb.exp(i64).dtype == np.float64
        assert (f32 > 0).dtype == np.bool_
        assert pb.sum(f32 > 0).dtype == np.int64
