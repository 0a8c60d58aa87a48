"""`pb.Buffer` in plain Python (numpy semantics) and while tracing (functional updates)."""

import numpy as np
import pytest

import pullback as pb
from pullback.compiler.dialects import array as A
from pullback.dsl.trace import Trace, tracing


def test_shape_and_dtype_follow_numpy_empty_like():
    xs = np.array([1.5, 2.5], dtype=np.float32)
    buf = pb.Buffer(xs, 3, 4)
    assert (buf.shape, buf.dtype, buf.ndim, buf.size, len(buf)) == ((3, 4), np.float32, 2, 12, 3)
    assert pb.Buffer(xs).shape == (2,)
    assert pb.Buffer(xs, (2, 5)).shape == (2, 5)
    np.testing.assert_array_equal(pb.copy(pb.Buffer(xs, 2)), np.zeros(2, np.float32))


def test_writes_and_reads_have_numpy_semantics():
    buf = pb.Buffer(np.zeros(1), 3, 4)
    want = np.zeros((3, 4))
    for index, value in [((1, 2), 5.0), ((slice(None), 0), np.arange(3.0)),
                         ((0, slice(None, None, -2)), [7.0, 8.0]), ((Ellipsis, 3), 9.0),
                         ((-1,), np.ones(4))]:
        buf[index] = value
        want[index] = value
    np.testing.assert_array_equal(buf[:, 1:], want[:, 1:])
    assert buf[1, 2] == 5.0
    np.testing.assert_array_equal(buf.copy(), want)


def test_reads_are_copies():
    buf = pb.Buffer(np.zeros(3))
    row = buf[:]
    buf[0] = 1.0
    assert row[0] == 0.0


def test_copy_freezes():
    buf = pb.Buffer(np.zeros(2))
    out = pb.copy(buf)
    assert buf.frozen
    with pytest.raises(ValueError, match="frozen"):
        buf[0] = 1.0
    np.testing.assert_array_equal(out, [0.0, 0.0])
    assert buf[1] == 0.0  # reading stays allowed


@pytest.mark.parametrize("use", [
    lambda b: b + 1, lambda b: 2 * b, lambda b: b @ np.eye(2), lambda b: np.eye(2) @ b,
    lambda b: -b, lambda b: np.sum(b), lambda b: pb.sum(b), lambda b: np.tanh(b),
    lambda b: np.asarray(b), lambda b: np.ones(2) + b, lambda b: b < 1,
], ids=["add", "rmul", "matmul", "rmatmul", "neg", "np.sum", "pb.sum", "np.tanh",
        "asarray", "ndarray+", "less"])
def test_array_operations_raise_type_error(use):
    buf = pb.Buffer(np.zeros(2), 2, 2)
    with pytest.raises(TypeError, match="pb.Buffer is not an array.*pb.copy"):
        use(buf)


def test_bad_construction():
    with pytest.raises(TypeError, match="np.array"):
        pb.Buffer([1, 2, 3], 3)
    with pytest.raises(TypeError, match="non-negative ints"):
        pb.Buffer(np.zeros(2), 2.5)


def _trace(fn, *shapes):
    t = Trace()
    with tracing(t):
        args = [t.new_input(s, np.dtype(np.float64)) for s in shapes]
        out = fn(*args)
    return t, out


def test_traced_writes_are_update_slices():
    def fill(x):
        buf = pb.Buffer(x, 2, 3)
        buf[0] = x
        buf[1, ::-1] = x * 2.0
        return pb.copy(buf)

    t, out = _trace(fill, (3,))
    assert isinstance(out, pb.Tracer) and out.shape == (2, 3)
    updates = [op for op in t.block.ops if isinstance(op, A.UpdateSliceOp)]
    assert [(u.starts, u.strides) for u in updates] == [((0, 0), (1, 1)), ((1, 2), (1, -1))]


def test_traced_buffer_reads_and_frozen_writes():
    def f(x):
        buf = pb.Buffer(x)
        buf[:] = x
        first = buf[0]
        pb.copy(buf)
        with pytest.raises(ValueError, match="frozen"):
            buf[0] = x[0]
        return first

    _, first = _trace(f, (4,))
    assert isinstance(first, pb.Tracer) and first.shape == ()


def test_tracer_written_into_a_numpy_buffer_makes_it_traced():
    def f(x):
        buf = pb.Buffer(np.zeros(1), 3)
        buf[0] = 5.0      # a plain write
        buf[1:] = x       # a traced write
        return pb.copy(buf)

    _, out = _trace(f, (2,))
    assert isinstance(out, pb.Tracer) and out.dtype == np.float64


def test_traced_write_errors():
    def bad_index(x):
        buf = pb.Buffer(x)
        buf[np.array([0, 1])] = x[:2]

    with pytest.raises(IndexError, match="ints, slices"):
        _trace(bad_index, (3,))

    def bad_shape(x):
        buf = pb.Buffer(x, 2, 3)
        buf[0] = x

    with pytest.raises(pb.ShapeError, match=r"\(4,\).*\(3,\)"):
        _trace(bad_shape, (4,))

    def traced_array_op(x):
        buf = pb.Buffer(x)
        return x + buf

    with pytest.raises(TypeError, match="pb.Buffer is not an array"):
        _trace(traced_array_op, (2,))
