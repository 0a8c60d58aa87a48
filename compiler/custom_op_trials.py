"""The checks `register_op` makes of an op defined outside pullback, on trial programs.

What the coverage test (`tests/compiler/test_autodiff_coverage.py`) checks of every op
of pullback's own dialects, for an op registered in a running process:

* the class builds the op from its operand values, with the operands' type as result
  type, and the op verifies;
* the interpreter implementation gives an array of the operands' shape;
* the VJP rule, the JVP rule over the VJP (a Hessian's two passes) and the batching
  rule run on a one-op program, and the module they make verifies;
* the scalar lowering gives one element of the element type, using only `arith` /
  `math` ops that the LLVM lowering (also after `expand-math`) and the OpenCL backend
  both have a row for.
"""

from __future__ import annotations

import numpy as np
from xdsl.dialects import arith, func
from xdsl.dialects.builtin import ModuleOp, TensorType, f32, f64
from xdsl.ir import Attribute, Block, Operation, Region

from pullback.compiler.interpreter import IMPLS, dtype_of

SHAPE = (2, 3)


def run_trials(what: str, cls: type[Operation], arity: int) -> None:
    """Run every trial on the registered op class `cls`; raise ValueError (TypeError for
    a class that does not build) naming what failed."""
    for element in (f64, f32):
        module, op = _one_op_module(what, cls, arity, element)
        _interpret(what, op)
        _differentiate(what, module)
        _lower(what, op, element)


def _one_op_module(what: str, cls: type[Operation], arity: int,
                   element: Attribute) -> tuple[ModuleOp, Operation]:
    """`@f(x0, ...) -> op(x0, ...)` over `tensor<2x3xelement>`."""
    t = TensorType(element, SHAPE)
    block = Block(arg_types=[t] * arity)
    try:
        op = cls(*block.args)
    except Exception as exc:  # noqa: BLE001 - the class's own error, reported
        raise TypeError(f"{what}: {cls.__name__}(*operands) must build the op from its "
                        f"{arity} operand value(s), as array.UnaryOp / array.BinaryOp do; it "
                        f"raised {type(exc).__name__}: {exc}") from exc
    block.add_op(op)
    if len(op.results) != 1 or op.results[0].type != t:
        raise ValueError(f"{what}: an elementwise op's result has its operands' type ({t}); "
                         f"'{op.name}' gave {[str(r.type) for r in op.results]}")
    block.add_op(func.ReturnOp(op.results[0]))
    module = ModuleOp([func.FuncOp("f", ([t] * arity, [t]), Region(block))])
    _verified(what, module, "the op")
    return module, op


def _verified(what: str, module: ModuleOp, made_by: str) -> None:
    try:
        module.verify()
    except Exception as exc:  # noqa: BLE001 - the verifier's message, reported
        raise ValueError(f"{what}: {made_by} makes IR that does not verify: {exc}") from exc


def _interpret(what: str, op: Operation) -> None:
    rng = np.random.default_rng(0)
    args = [rng.uniform(0.25, 0.75, SHAPE).astype(dtype_of(v.type)) for v in op.operands]
    try:
        out = np.asarray(IMPLS[type(op)](op, *args))
    except Exception as exc:  # noqa: BLE001 - the implementation's own error, reported
        raise ValueError(f"{what}: interpret= failed on arrays of shape {SHAPE}: "
                         f"{type(exc).__name__}: {exc}") from exc
    if out.shape != SHAPE:
        raise ValueError(f"{what}: interpret= must give an array of its operands' shape "
                         f"{SHAPE}, gave shape {out.shape}")


def _differentiate(what: str, module: ModuleOp) -> None:
    """Reverse mode, forward mode over it, and batching of the one-op function."""
    from pullback.compiler.autodiff.forward import build_jvp
    from pullback.compiler.autodiff.reverse import build_vjp
    from pullback.compiler.autodiff.vmap import build_vmap

    f = next(op for op in module.ops if isinstance(op, func.FuncOp))
    arity = len(f.body.block.args)
    steps = (
        ("the VJP rule", lambda: build_vjp(module, f)),
        ("the JVP rule (over the VJP, as a Hessian runs)",
         lambda: build_jvp(module, _function(module, "f_vjp"))),
        ("the batching rule", lambda: build_vmap(module, f, list(range(arity)), 2)),
    )
    for name, step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - the rule's own error, reported
            raise ValueError(f"{what}: {name} failed on a one-op program: "
                             f"{type(exc).__name__}: {exc}") from exc
        _verified(what, module, name)


def _function(module: ModuleOp, name: str) -> func.FuncOp:
    return next(op for op in module.ops
                if isinstance(op, func.FuncOp) and op.sym_name.data == name)


def _lower(what: str, op: Operation, element: Attribute) -> None:
    """The scalar rule on one element, and the rows its scalar ops need."""
    from pullback.compiler.backends.opencl.ops import CODE_FOR_OP
    from pullback.compiler.context import make_context
    from pullback.compiler.conversion.kernel_writer import KernelWriter
    from pullback.compiler.conversion.loops_to_llvm import LOOPS_TO_LLVM
    from pullback.compiler.conversion.scalar_ops import scalar_rule
    from pullback.compiler.transforms.expand_math import ExpandMathPass

    rule = scalar_rule(type(op))
    assert rule is not None
    fn = func.FuncOp("element", ([element] * len(op.operands), [element]))
    try:
        value = rule(KernelWriter(fn), op, list(fn.body.block.args))
    except Exception as exc:  # noqa: BLE001 - the rule's own error, reported
        raise ValueError(f"{what}: the lowering failed on {element} elements: "
                         f"{type(exc).__name__}: {exc}") from exc
    if getattr(value, "type", None) != element:
        raise ValueError(f"{what}: the lowering must return the scalar result, of type "
                         f"{element}; it returned {value!r}")
    fn.body.block.add_op(func.ReturnOp(value))
    module = ModuleOp([fn])
    _verified(what, module, "the lowering")
    used = _ops_in(fn)
    ExpandMathPass().apply(make_context(), module)
    used |= _ops_in(fn)
    llvm_rows = {cls for table in LOOPS_TO_LLVM for cls in table}
    others = sorted(c.name for c in used if c.dialect_name() not in ("arith", "math"))
    no_llvm = sorted(c.name for c in used if c not in llvm_rows)
    no_opencl = sorted(c.name for c in used if c not in CODE_FOR_OP and c is not arith.ConstantOp)
    problems = [
        *([f"ops outside arith / math: {', '.join(others)}"] if others else []),
        *([f"no LLVM lowering row for {', '.join(no_llvm)}"] if no_llvm else []),
        *([f"no OpenCL row for {', '.join(no_opencl)}"] if no_opencl else []),
    ]
    if problems:
        raise ValueError(f"{what}: the lowering on {element} elements uses scalar ops the "
                         "backends cannot compile (" + "; ".join(problems) + "); build it "
                         "from the arith / math ops pullback's own ops lower to")


def _ops_in(fn: func.FuncOp) -> set[type[Operation]]:
    return {type(o) for o in fn.walk() if o is not fn and not isinstance(o, func.ReturnOp)}

