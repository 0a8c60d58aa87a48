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
from pullback.dsl.ops import *  # noqa: F403
from pullback.dsl.ops import __all__ as _ops_all
from pullback.dsl.tracer import Tracer

__all__ = [
    "hook", "showgrad",
    "forwarddiff", "checkpointed", "eager_update", "custom_op",
    "Buffer", "ShapeError", "Tracer", "TracerBoolConversionError", "TracerError", "copy",
    *_ops_all,
]
