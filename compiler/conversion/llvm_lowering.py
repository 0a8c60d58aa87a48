"""The table-driven driver shared by the `*_to_llvm` lowerings.

A lowering table maps an op class to a rule `rule(op, ctx) -> (new_ops, results)`:
the ops to insert in place of `op` and the values that replace its results; an op
with no rule raises, unless it is in the llvm dialect already. Rules never convert
types: after all rules ran, `retype_values` rewrites every `index`
value to `i64` and every `memref` value to `!llvm.ptr` in place (cheaper than
recursive type conversion, and safe on `arith.constant 0 : index`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from xdsl.dialects import llvm
from xdsl.dialects.builtin import IndexType, MemRefType, ModuleOp, i64
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.rewriter import Rewriter

from pullback.compiler.diagnostics import located


class LLVMLoweringContext:
    """State shared by the rules: external functions the lowered code calls."""

    def __init__(self) -> None:
        self.externals: dict[str, llvm.LLVMFunctionType] = {}

    def declare(self, name: str, inputs: Sequence[Attribute], output: Attribute) -> None:
        """Declare external function `name` (e.g. a libm routine) in the module."""
        self.externals[name] = llvm.LLVMFunctionType(list(inputs), output)


Rule = Callable[[Operation, LLVMLoweringContext], tuple[list[Operation], list[SSAValue]]]
LoweringTable = Mapping[type[Operation], Rule]


def llvm_type(t: Attribute) -> Attribute:
    """The llvm-dialect type of a kernel-level type."""
    if isinstance(t, IndexType):
        return i64
    if isinstance(t, MemRefType):
        return llvm.LLVMPointerType()
    return t


def is_lowered(op: Operation) -> bool:
    """Whether `op` is left as it is: an llvm-dialect op or the module itself."""
    return isinstance(op, ModuleOp) or op.name.startswith("llvm.")


def apply_tables(module: ModuleOp, tables: Sequence[LoweringTable],
                 ctx: LLVMLoweringContext) -> None:
    """Replace every op by its rule in `tables` (inner ops before their parents); an op
    with no rule that is not already lowered (`is_lowered`) raises."""
    rules: dict[type[Operation], Rule] = {}
    for table in tables:
        rules.update(table)
    for op in list(module.walk(reverse=False, region_first=True)):
        rule = rules.get(type(op))
        if rule is None:
            if not is_lowered(op):
                dialect = op.name.split(".")[0]
                raise NotImplementedError(located(
                    op, f"no LLVM lowering rule for '{op.name}': add a row for it to the table "
                    f"of compiler/conversion/{dialect}_to_llvm.py (kernel-level IR may use only "
                    "ops with a row; llvm-dialect ops pass through)"))
            continue
        new_ops, results = rule(op, ctx)
        Rewriter.replace_op(op, new_ops, results)


def retype_values(module: ModuleOp) -> None:
    """Give `index` values type i64 and `memref` values type `!llvm.ptr`, in place."""
    for op in module.walk():
        for region in op.regions:
            for block in region.blocks:
                for arg in block.args:
                    if arg.type != llvm_type(arg.type):
                        Rewriter.replace_value_with_new_type(arg, llvm_type(arg.type))
        for res in op.results:
            if res.type != llvm_type(res.type):
                Rewriter.replace_value_with_new_type(res, llvm_type(res.type))


def declare_externals(module: ModuleOp, ctx: LLVMLoweringContext) -> None:
    """Add an `llvm.func` declaration for each external function the rules used."""
    for name, ftype in ctx.externals.items():
        module.body.block.add_op(
            llvm.FuncOp(name, ftype, linkage=llvm.LinkageAttr("external"))
        )
