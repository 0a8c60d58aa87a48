"""The DSL's public names and numpy dispatch, derived from `dsl/ops.py`: every name
public before the derivation still is, and numpy's spelling of each DSL function
traces the same op as the DSL function."""

import numpy as np
import pytest

import pullback as pb
import pullback.dsl as dsl
from pullback.dsl import numpy_dispatch, ops
from pullback.dsl.trace import Trace, tracing

# The public names of `pullback.dsl` as they were listed by hand.
LISTED_NAMES = {
    "hook", "showgrad", "forwarddiff", "checkpointed", "eager_update", "custom_op",
    "Buffer", "ShapeError", "Tracer", "TracerBoolConversionError", "TracerError",
    "abs", "add", "arccos", "arcsin", "arctan", "arctan2", "astype", "broadcast_to",
    "clip", "concatenate", "copy", "cos", "cosh", "cumsum", "divide", "dot", "equal", "exp",
    "expand_dims", "expm1", "greater", "greater_equal", "ignore_derivatives", "less",
    "less_equal", "log", "log1p", "logical_and", "logical_not", "logical_or", "logsumexp",
    "matmul", "max", "maximum", "mean", "min", "minimum", "multiply", "negative",
    "not_equal", "power", "prod", "ravel", "reshape", "sign", "sin", "sinh", "softmax",
    "sqrt", "square", "squeeze", "stack", "subtract", "sum", "tan", "tanh", "transpose",
    "where",
}

# numpy ufuncs (by the name numpy calls them) that were dispatched by hand, and the
# DSL function each went to.
LISTED_UFUNCS = {
    "add": "add", "subtract": "subtract", "multiply": "multiply", "divide": "divide",
    "true_divide": "divide", "power": "power", "negative": "negative", "absolute": "abs",
    "sign": "sign", "square": "square", "exp": "exp", "log": "log", "log1p": "log1p",
    "expm1": "expm1", "sqrt": "sqrt", "sin": "sin", "cos": "cos", "tan": "tan",
    "tanh": "tanh", "sinh": "sinh", "cosh": "cosh", "arcsin": "arcsin", "arccos": "arccos",
    "arctan": "arctan", "arctan2": "arctan2", "maximum": "maximum", "minimum": "minimum",
    "less": "less", "less_equal": "less_equal", "greater": "greater",
    "greater_equal": "greater_equal", "equal": "equal", "not_equal": "not_equal",
    "logical_and": "logical_and", "logical_or": "logical_or", "logical_not": "logical_not",
    "matmul": "matmul",
}

# numpy functions that were dispatched by hand to the DSL function of the same name.
LISTED_FUNCTIONS = [
    np.sum, np.prod, np.max, np.min, np.mean, np.where, np.dot, np.transpose, np.reshape,
    np.broadcast_to, np.concatenate, np.stack, np.cumsum, np.clip, np.ravel, np.squeeze,
    np.expand_dims,
]


def test_public_names_are_exactly_the_listed_ones_plus_new_dsl_functions():
    assert set(dsl.__all__) == LISTED_NAMES | set(ops.__all__)
    assert len(dsl.__all__) == len(set(dsl.__all__))
    for name in dsl.__all__:
        assert getattr(pb, name) is getattr(dsl, name), name
        assert name in pb.__all__
    assert not any(name.startswith("_") for name in ops.__all__)


def test_listed_numpy_spellings_are_dispatched_to_their_dsl_functions():
    for ufunc_name, dsl_name in LISTED_UFUNCS.items():
        assert numpy_dispatch.UFUNCS[ufunc_name] is getattr(pb, dsl_name), ufunc_name
    for fn in LISTED_FUNCTIONS:
        assert numpy_dispatch.FUNCTIONS[fn] is getattr(pb, fn.__name__), fn.__name__
    assert numpy_dispatch.FUNCTIONS[np.amax] is pb.max
    assert numpy_dispatch.FUNCTIONS[np.amin] is pb.min
    # nothing else, but numpy's spelling of a DSL function added since
    same_named = [getattr(np, n) for n in ops.__all__ if callable(getattr(np, n, None))]
    assert set(numpy_dispatch.UFUNCS) == set(LISTED_UFUNCS) | {
        f.__name__ for f in same_named if isinstance(f, np.ufunc)}
    assert set(numpy_dispatch.FUNCTIONS) == set(LISTED_FUNCTIONS) | {
        np.amax, np.amin, np.shape, np.ndim, np.size, np.copyto} | {
        f for f in same_named if not isinstance(f, np.ufunc) and f is not np.astype}


def test_np_astype_stays_refused_on_traced_arrays():
    t = Trace()
    with tracing(t):
        x = t.new_input((3,), np.dtype(np.float64))
        with pytest.raises(TypeError, match="numpy.astype is not supported"):
            np.astype(x, np.float32)


def _inputs(t: Trace, ufunc: np.ufunc) -> list:
    """Traced arguments `ufunc` accepts: bool masks for the logical ufuncs, 2x2 matrices
    for matmul, float vectors otherwise."""
    if ufunc.__name__.startswith("logical_"):
        dtype, shape = np.dtype(np.bool_), (3,)
    elif ufunc.__name__ == "matmul":
        dtype, shape = np.dtype(np.float64), (2, 2)
    else:
        dtype, shape = np.dtype(np.float64), (3,)
    return [t.new_input(shape, dtype) for _ in range(ufunc.nin)]


@pytest.mark.parametrize("name", [n for n in ops.__all__
                                  if isinstance(getattr(np, n, None), np.ufunc)])
def test_every_dsl_function_named_like_a_ufunc_is_dispatched_to_the_same_op(name):
    ufunc = getattr(np, name)
    t = Trace()
    with tracing(t):
        args = _inputs(t, ufunc)
        via_numpy = ufunc(*args)
        via_dsl = getattr(pb, name)(*args)
    assert type(via_numpy.value.owner) is type(via_dsl.value.owner)
    assert (via_numpy.shape, via_numpy.dtype) == (via_dsl.shape, via_dsl.dtype)
