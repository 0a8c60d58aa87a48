"""`expand-forward`: each `ad.forward` region replaced by plain ops, before AD.

Input invariant: none beyond valid IR; `ad.forward` ops may nest (the innermost are
expanded first, so an outer region's forward derivative sees plain ops).

Output IR: no `ad.forward` op. With `derivatives=true` (the default) a region
`y = r(x, c...)` becomes

    y_out = r(sg(x), sg(c)...) + reshape((x - sg(x)) @ J^T)

with `sg` = `ad.stop_gradient` (on float values): the value is `r`'s (the second term
is zero), and the reverse pass sees exactly one derivative, `J`, with respect to `x`
(`J` itself is computed from stopped values only). `J` (shape `(y.size, x.size)`) is
assembled in forward mode: the region as a function `@forward_region`, its `jvp` with
respect to `x` alone (the captured values' tangents bound to zero), batched by `vmap`
over at most `chunk` tangent directions, fed rows of the identity (computed by the
program, no constant array). The `ad.stop_gradient` of `x` and the `array.add` carry
`pullback.forwarddiff` (`FORWARDDIFF_MARK`): the Jacobian is constant to a further
differentiation, and `drop-derivative-terms` drops the zero term once AD is done. A
region with a non-float result, or an empty `x` or result, becomes its value alone.

With `derivatives=false` (the value mode, which differentiates nothing) every region
becomes its value alone: its ops inlined, bound to its operands.

The reverse, forward and batching passes (`autodiff`, `jvp`, `vmap`) expand the
regions of the function they differentiate themselves (`derivatives=true`), so they
accept IR that still holds `ad.forward`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType, UnitAttr
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass

from pullback.compiler.autodiff.checkpoint import inline_function, region_function
from pullback.compiler.autodiff.emit import Emitter
from pullback.compiler.autodiff.functions import is_float
from pullback.compiler.dialects import array as A
from pullback.compiler.dialects.ad import FORWARDDIFF_MARK, ForwardOp, StopGradientOp

CLEANUP = ("simplify", "cse", "dce")
"""The passes run on a region's forward derivative before it is batched."""


def has_forward_regions(root: Operation) -> bool:
    """Whether `root` holds an `ad.forward` op."""
    return any(isinstance(op, ForwardOp) for op in root.walk())


def expand_forward_regions(root: Operation, derivatives: bool = True) -> None:
    """Replace every `ad.forward` inside `root`, innermost first (module docstring)."""
    for op in reversed(list(root.walk())):
        if isinstance(op, ForwardOp):
            _expand(op, derivatives)


def _expand(op: ForwardOp, derivatives: bool) -> None:
    new = Block()
    e = Emitter(new)
    module, fn = region_function(op, "forward_region")
    with e.at(op.location):
        if derivatives:
            result = _with_jacobian(e, op, module, fn)
        else:
            (result,) = inline_function(new, fn, [op.x, *op.captured])
    block = op.parent_block()
    assert block is not None
    for inner in list(new.ops):
        inner.detach()
        block.insert_op_before(inner, op)
    op.result.replace_all_uses_with(result)
    op.detach()
    op.erase()


def _with_jacobian(e: Emitter, op: ForwardOp, module: ModuleOp, fn: func.FuncOp) -> SSAValue:
    """`r(sg(x), sg(c)...) + reshape((x - sg(x)) @ J^T)` (module docstring)."""
    x = op.x
    start = e.emit(StopGradientOp(x))
    start.owner.attributes[FORWARDDIFF_MARK] = UnitAttr()
    inputs = [start, *(e.emit(StopGradientOp(v)) if is_float(v) else v for v in op.captured)]
    (value,) = inline_function(e.block, fn, inputs)
    n, m = _size(A.shape_of(x)), _size(A.shape_of(value))
    if not is_float(value) or n == 0 or m == 0:
        return value
    jt = _jacobian_transposed(e, module, fn, inputs, x, m, op.chunk.value.data)
    d = e.reshape(e.sub(x, start), (1, n))
    element = A.element_type_of(value)
    if A.element_type_of(d) != element:
        d = e.convert(d, element)
    lin = e.reshape(e.matmul(d, jt), A.shape_of(value))
    out = e.add(value, lin)
    out.owner.attributes[FORWARDDIFF_MARK] = UnitAttr()
    return out


def _jacobian_transposed(e: Emitter, module: ModuleOp, fn: func.FuncOp,
                         inputs: Sequence[SSAValue], x: SSAValue, m: int,
                         chunk: int) -> SSAValue:
    """`J^T` of shape (x.size, y.size), assembled from forward passes over chunks of
    at most `chunk` tangent directions."""
    from pullback.compiler.autodiff.vmap import build_vmap

    n = _size(A.shape_of(x))
    jvp = _tangent_function(module, fn)
    sizes = [min(chunk, n - s) for s in range(0, n, chunk)]
    batched: dict[int, func.FuncOp] = {}
    for size in sorted(set(sizes)):
        vm = build_vmap(module, jvp, (len(inputs),), size, broadcast=True)
        vm.sym_name = StringAttr(f"{jvp.sym_name.data}_vmap{size}")
        batched[size] = vm
    rows = []
    for first, size in zip(range(0, n, chunk), sizes, strict=True):
        seed = _identity_rows(e, x, first, size)
        _, tangent = inline_function(e.block, batched[size], [*inputs, seed])
        rows.append(e.reshape(tangent, (size, m)))
    return rows[0] if len(rows) == 1 else e.emit(A.ConcatenateOp(rows, 0))


def _tangent_function(module: ModuleOp, fn: func.FuncOp) -> func.FuncOp:
    """`@forward_region_jvp(x, captured..., tx)`: the forward derivative with respect to
    `x` only (the captured values' tangents bound to zero), cleaned up."""
    from pullback.compiler.autodiff.forward import build_jvp
    from pullback.compiler.context import make_context
    from pullback.compiler.passes import get_pass
    from pullback.compiler.transforms.bind_zeros import bind_zeros

    jvp = build_jvp(module, fn)
    n = len(fn.body.block.args)
    bind_zeros(jvp, range(n + 1, len(jvp.body.block.args)))
    ctx = make_context()
    for name in CLEANUP:
        get_pass(name)().apply(ctx, module)
    return jvp


def _identity_rows(e: Emitter, x: SSAValue, first: int, size: int) -> SSAValue:
    """Rows `first .. first+size` of the identity of order x.size, as `size` tangents
    shaped like `x`; computed by the program (no constant array)."""
    t = x.type
    assert isinstance(t, TensorType)
    n, element = _size(A.shape_of(x)), t.element_type
    square = A.tensor_of(element, [size, n])
    cols = e.emit(A.CumsumOp(e.full(1.0, A.tensor_of(element, [n])), 0))
    rows = e.add(e.emit(A.CumsumOp(e.full(1.0, A.tensor_of(element, [size])), 0)),
                 e.full(float(first), A.tensor_of(element, [size])))
    same = e.compare("eq", e.broadcast(e.reshape(rows, (size, 1)), (size, n)),
                     e.broadcast(e.reshape(cols, (1, n)), (size, n)))
    eye = e.select(same, e.full(1.0, square), e.full(0.0, square))
    return e.reshape(eye, (size, *A.shape_of(x)))


def _size(shape: Sequence[int]) -> int:
    total = 1
    for d in shape:
        total *= d
    return total


@dataclass(frozen=True)
class ExpandForwardPass(ModulePass):
    """Replace every `ad.forward` region by plain ops (module docstring).

    Options: `derivatives` (default true): false gives each region's value alone.
    """

    name = "expand-forward"
    derivatives: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        expand_forward_regions(op, self.derivatives)
