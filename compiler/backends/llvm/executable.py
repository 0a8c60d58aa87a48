"""`LLVMExecutable`: a compiled function, called with numpy arrays."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np
from llvmlite import binding
from xdsl.dialects.builtin import AnyFloat, TensorType, f32, f64, i1, i64
from xdsl.ir import Attribute

_DTYPES: dict[Attribute, np.dtype] = {
    f64: np.dtype(np.float64), f32: np.dtype(np.float32), i64: np.dtype(np.int64),
    i1: np.dtype(np.bool_),
}


def numpy_dtype(element_type: Attribute) -> np.dtype:
    """The numpy dtype of an element type."""
    if element_type not in _DTYPES:
        kind = "float" if isinstance(element_type, AnyFloat) else "element"
        raise TypeError(f"{kind} type {element_type} is not supported (f64, f32, i64, i1)")
    return _DTYPES[element_type]


def _spec(t: Attribute) -> tuple[np.dtype, tuple[int, ...]]:
    assert isinstance(t, TensorType)
    return numpy_dtype(t.element_type), tuple(t.get_shape())


class LLVMExecutable:
    """A natively compiled function over arrays.

    `run(inputs)` checks the inputs, allocates fresh outputs and makes one native
    call. Temporaries are allocated once and reused by every call, so an executable
    must not be run from several threads at once.

    Attributes:
        input_types, output_types: the tensor types of the function.
        stages: MLIR text after each lowering stage (only with `keep_ir=True`).
        llvm_ir: the optimized LLVM IR.
        timings: seconds spent per compile stage.
    """

    def __init__(self, name: str, input_types: Sequence[TensorType],
                 output_types: Sequence[TensorType], temp_bytes: Sequence[int],
                 engine: binding.ExecutionEngine, llvm_ir: str, stages: dict[str, str],
                 timings: dict[str, float]):
        self.name = name
        self.input_types = tuple(input_types)
        self.output_types = tuple(output_types)
        self.llvm_ir = llvm_ir
        self.stages = stages
        self.timings = timings
        self._engine = engine
        self._inputs = [_spec(t) for t in input_types]
        self._outputs = [_spec(t) for t in output_types]
        self._temps = [np.empty(max(n, 1), np.uint8) for n in temp_bytes]
        self._temp_ptrs = [t.ctypes.data for t in self._temps]
        n_args = len(self._inputs) + len(self._outputs) + len(self._temps)
        address = engine.get_function_address(name)
        if not address:
            raise RuntimeError(f"the JIT has no function @{name}")
        self._fn = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * n_args)(address)

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Outputs of the function for C-contiguous `inputs` of the exact dtypes and shapes."""
        if len(inputs) != len(self._inputs):
            raise ValueError(f"@{self.name} takes {len(self._inputs)} arrays, got {len(inputs)}")
        ptrs = []
        for i, (a, (dtype, shape)) in enumerate(zip(inputs, self._inputs, strict=True)):
            if (not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape
                    or not a.flags.c_contiguous):
                raise ValueError(self._bad_input(i, a, dtype, shape))
            ptrs.append(a.ctypes.data)
        outs = [np.empty(shape, dtype) for dtype, shape in self._outputs]
        self._fn(*ptrs, *[o.ctypes.data for o in outs], *self._temp_ptrs)
        return outs

    def _bad_input(self, i: int, a: object, dtype: np.dtype, shape: tuple[int, ...]) -> str:
        want = f"a C-contiguous {dtype} array of shape {shape}"
        if not isinstance(a, np.ndarray):
            return f"@{self.name} input {i}: expected {want}, got {type(a).__name__}"
        layout = "C-contiguous" if a.flags.c_contiguous else "non-contiguous"
        return (f"@{self.name} input {i}: expected {want}, got a {layout} {a.dtype} array "
                f"of shape {a.shape}")
