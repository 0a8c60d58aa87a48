"""A numpy reference interpreter for functions over `array` ops.

It exists to test and debug the compiler (rules, passes, lowerings): it is never
used to execute user programs. `IMPLS` holds one entry per op class; each entry
takes the op and its operand arrays and returns the result array, which
`evaluate` casts to the declared element type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    IntegerType,
    ModuleOp,
    TensorType,
)
from xdsl.ir import Attribute, BlockArgument, Operation, SSAValue

from pullback.compiler import host_calls
from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.ad import (
    CallbackGradOp,
    CallbackOp,
    CheckpointOp,
    EagerUpdateOp,
    ForwardOp,
    HookOp,
    ReverseBeginOp,
    StopGradientOp,
    YieldOp,
)

Impl = Callable[..., np.ndarray]


def dtype_of(t: Attribute) -> np.dtype:
    """The numpy dtype of a tensor type's (or an element type's) elements."""
    el = t.element_type if isinstance(t, TensorType) else t
    if isinstance(el, Float64Type):
        return np.dtype(np.float64)
    if isinstance(el, Float32Type):
        return np.dtype(np.float32)
    if isinstance(el, IntegerType) and el.width.data == 1:
        return np.dtype(np.bool_)
    if isinstance(el, IntegerType) and el.width.data == 64:
        return np.dtype(np.int64)
    raise TypeError(f"no numpy dtype for element type {el}")


def _constant(op: A.ConstantOp) -> np.ndarray:
    shape = A.shape_of(op.result)
    values = np.array(op.value.get_values(), dtype=dtype_of(op.result.type))
    if values.size == int(np.prod(shape)):
        return values.reshape(shape)
    return np.broadcast_to(values, shape)  # a splat


def _full(op: A.FullOp) -> np.ndarray:
    return np.full(A.shape_of(op.result), op.scalar, dtype=dtype_of(op.result.type))


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Impl:
    return lambda op, x: fn(x)


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Impl:
    return lambda op, x, y: fn(x, y)


_COMPARE: dict[str, Callable[[Any, Any], np.ndarray]] = {
    "lt": np.less, "le": np.less_equal, "gt": np.greater,
    "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal,
}


def _compare(op: A.CompareOp, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _COMPARE[op.predicate.data](x, y)


def _convert(op: A.ConvertOp, x: np.ndarray) -> np.ndarray:
    return x.astype(dtype_of(op.result.type))


def _broadcast(op: A.BroadcastOp, x: np.ndarray) -> np.ndarray:
    return np.broadcast_to(x, A.shape_of(op.result))


def _reshape(op: A.ReshapeOp, x: np.ndarray) -> np.ndarray:
    return np.reshape(x, A.shape_of(op.result))


def _transpose(op: A.TransposeOp, x: np.ndarray) -> np.ndarray:
    return np.transpose(x, op.perm)


def _reduce(fn: Callable[..., np.ndarray]) -> Impl:
    return lambda op, x: fn(x, axis=op.axis_list)


def _cumsum(op: A.CumsumOp, x: np.ndarray) -> np.ndarray:
    if x.ndim == 0:
        return x
    axis = op.axis.value.data
    if op.reverse is None:
        return np.cumsum(x, axis=axis)
    return np.flip(np.cumsum(np.flip(x, axis), axis=axis), axis)


def _window(starts: Sequence[int], strides: Sequence[int], shape: Sequence[int]) -> Any:
    """Open-mesh index arrays selecting start + i * stride along every axis."""
    return np.ix_(*(s + st * np.arange(n) for s, st, n in zip(starts, strides, shape, strict=True)))


def _slice(op: A.SliceOp, x: np.ndarray) -> np.ndarray:
    return x[_window(op.starts, op.strides, A.shape_of(op.result))]


def _update_slice(op: A.UpdateSliceOp, base: np.ndarray, value: np.ndarray) -> np.ndarray:
    out = base.copy()
    out[_window(op.starts, op.strides, value.shape)] = value
    return out


def _take(op: A.TakeOp, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.take(x, idx, axis=op.axis.value.data)


def _scatter_add(op: A.ScatterAddOp, base: np.ndarray, idx: np.ndarray,
                 updates: np.ndarray) -> np.ndarray:
    out = base.copy()
    np.add.at(out, (slice(None),) * op.axis.value.data + (idx,), updates)
    return out


def _concatenate(op: A.ConcatenateOp, *xs: np.ndarray) -> np.ndarray:
    return np.concatenate(xs, axis=op.axis.value.data)


def _host_call(op: CallbackGradOp, g: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The gradient the host function passes on (`pullback.compiler.host_calls`)."""
    flat = np.ravel(g)
    out = host_calls.call(int(table), op.slot.value.data, op.unreached is not None, flat)
    return (flat if out is None else out).reshape(g.shape)


def _region_value(op: CheckpointOp | ForwardOp, *inputs: np.ndarray) -> np.ndarray:
    """The region evaluated on the operands (`ad.checkpoint`; the value of `ad.forward`)."""
    block = op.body.block
    env: dict[SSAValue, np.ndarray] = dict(zip(block.args, inputs, strict=True))
    for inner in block.ops:
        if isinstance(inner, YieldOp):
            return env[inner.values[0]]
        env[inner.results[0]] = _step(inner, env)
    raise ValueError(f"{op.name}: the region does not end in ad.yield")


IMPLS: dict[type[Operation], Impl] = {
    StopGradientOp: lambda op, x: x,
    CallbackOp: lambda op, x, table: x,
    CallbackGradOp: _host_call,
    HookOp: lambda op, x: x,
    CheckpointOp: _region_value,
    ForwardOp: _region_value,
    EagerUpdateOp: lambda op, param, *states: param,
    A.ConstantOp: _constant,
    A.FullOp: _full,
    A.NegOp: _unary(np.negative),
    A.AbsOp: _unary(np.abs),
    A.SignOp: _unary(np.sign),
    A.ExpOp: _unary(np.exp),
    A.LogOp: _unary(np.log),
    A.Log1pOp: _unary(np.log1p),
    A.Expm1Op: _unary(np.expm1),
    A.SqrtOp: _unary(np.sqrt),
    A.SinOp: _unary(np.sin),
    A.CosOp: _unary(np.cos),
    A.TanOp: _unary(np.tan),
    A.TanhOp: _unary(np.tanh),
    A.SinhOp: _unary(np.sinh),
    A.CoshOp: _unary(np.cosh),
    A.ArcsinOp: _unary(np.arcsin),
    A.ArccosOp: _unary(np.arccos),
    A.ArctanOp: _unary(np.arctan),
    A.AddOp: _binary(np.add),
    A.SubOp: _binary(np.subtract),
    A.MulOp: _binary(np.multiply),
    A.DivOp: _binary(np.divide),
    A.PowOp: _binary(np.power),
    A.MaximumOp: _binary(np.maximum),
    A.MinimumOp: _binary(np.minimum),
    A.Arctan2Op: _binary(np.arctan2),
    A.CompareOp: _compare,
    A.SelectOp: lambda op, c, x, y: np.where(c, x, y),
    A.ConvertOp: _convert,
    A.BroadcastOp: _broadcast,
    A.ReshapeOp: _reshape,
    A.TransposeOp: _transpose,
    A.ReduceSumOp: _reduce(np.sum),
    A.ReduceProdOp: _reduce(np.prod),
    A.ReduceMaxOp: _reduce(np.max),
    A.ReduceMinOp: _reduce(np.min),
    A.CumsumOp: _cumsum,
    A.MatmulOp: _binary(np.matmul),
    A.SliceOp: _slice,
    A.UpdateSliceOp: _update_slice,
    A.TakeOp: _take,
    A.ScatterAddOp: _scatter_add,
    A.ConcatenateOp: _concatenate,
}


def _as_array(value: Any, t: Attribute) -> np.ndarray:
    """`value` as a fresh array of the declared tensor type."""
    want = A.shape_of(t)
    arr = np.asarray(value)
    if arr.shape != want:
        raise ValueError(f"expected an array of shape {want} for {t}, got shape {arr.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        return np.array(arr, dtype=dtype_of(t))


def _step(op: Operation, env: dict[SSAValue, np.ndarray]) -> np.ndarray:
    """The result of one single-result op, its operands read from `env`."""
    impl = IMPLS.get(type(op))
    if impl is None:
        raise NotImplementedError(f"the interpreter has no implementation of '{op.name}'")
    with np.errstate(all="ignore"):
        out = impl(op, *(env[v] for v in op.operands))
    return _as_array(out, op.results[0].type)


def evaluate(function: func.FuncOp, args: Sequence[Any]) -> list[np.ndarray]:
    """Run `function` on numpy arrays; one array per result.

    An `array.assign` writes its value into the caller's argument array, in place, when
    the function returns (the argument must then be a writeable array of its type)."""
    block = function.body.block
    if len(args) != len(block.args):
        raise ValueError(
            f"@{function.sym_name.data} takes {len(block.args)} arguments, got {len(args)}"
        )
    env: dict[SSAValue, np.ndarray] = {
        a: _as_array(v, a.type) for a, v in zip(block.args, args, strict=True)
    }
    writes: list[tuple[int, np.ndarray]] = []
    for op in block.ops:
        if isinstance(op, func.ReturnOp):
            for i, value in writes:
                np.copyto(args[i], value)
            return [env[v] for v in op.arguments]
        if isinstance(op, A.AssignOp):
            target = op.target
            assert isinstance(target, BlockArgument)
            writes.append((target.index, env[op.value]))
            continue
        if isinstance(op, ReverseBeginOp):
            continue
        env[op.results[0]] = _step(op, env)
    raise ValueError(f"@{function.sym_name.data} does not end in func.return")


def find_function(module: ModuleOp, name: str) -> func.FuncOp:
    """The `func.func` called `name` in `module`."""
    for op in module.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == name:
            return op
    names = [op.sym_name.data for op in module.ops if isinstance(op, func.FuncOp)]
    raise KeyError(f"no function @{name} in the module; it has {', '.join(names) or 'none'}")


def evaluate_module(module: ModuleOp, name: str, args: Sequence[Any]) -> list[np.ndarray]:
    """Run the function `name` of `module` on numpy arrays."""
    return evaluate(find_function(module, name), args)
