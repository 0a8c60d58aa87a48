"""The array DSL: numpy-named functions that trace into the array dialect.

Every function works on traced arrays inside `pb.gradient` & co., and on plain numpy
inputs outside any trace (returning numpy results), so one function runs both ways.
"""

from pullback.dsl.buffer import Buffer, copy
from pullback.dsl.callbacks import hook, showgrad
from pullback.dsl.checkpoint import checkpointed
from pullback.dsl.custom_op import custom_op
from pullback.dsl.eager_update import eager_update
from pullback.dsl.errors import ShapeError, TracerBoolConversionError, TracerError
from pullback.dsl.forwarddiff import forwarddiff
from pullback.dsl.ops import (
    abs,
    add,
    arccos,
    arcsin,
    arctan,
    arctan2,
    astype,
    broadcast_to,
    clip,
    concatenate,
    cos,
    cosh,
    cumsum,
    divide,
    dot,
    equal,
    exp,
    expand_dims,
    expm1,
    greater,
    greater_equal,
    ignore_derivatives,
    less,
    less_equal,
    log,
    log1p,
    logical_and,
    logical_not,
    logical_or,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    multiply,
    negative,
    not_equal,
    power,
    prod,
    ravel,
    reshape,
    sign,
    sin,
    sinh,
    softmax,
    sqrt,
    square,
    squeeze,
    stack,
    subtract,
    sum,
    tan,
    tanh,
    transpose,
    where,
)
from pullback.dsl.tracer import Tracer

__all__ = [
    "hook", "showgrad",
    "forwarddiff", "checkpointed", "eager_update", "custom_op",
    "Buffer", "ShapeError", "Tracer", "TracerBoolConversionError", "TracerError",
    "abs", "add", "arccos", "arcsin", "arctan", "arctan2", "astype", "broadcast_to",
    "clip", "concatenate", "copy", "cos", "cosh", "cumsum", "divide", "dot", "equal", "exp",
    "expand_dims", "expm1", "greater", "greater_equal", "ignore_derivatives", "less",
    "less_equal", "log",
    "log1p", "logical_and", "logical_not", "logical_or", "logsumexp", "matmul", "max",
    "maximum", "mean", "min", "minimum", "multiply", "negative", "not_equal", "power",
    "prod", "ravel", "reshape", "sign", "sin", "sinh", "softmax", "sqrt", "square", "squeeze",
    "stack", "subtract", "sum", "tan", "tanh", "transpose", "where",
]
