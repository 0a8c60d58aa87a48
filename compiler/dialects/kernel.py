"""The `kernel` dialect: fusion decisions as IR, between the array level and loops.

`kernel.fused` is one kernel of the schedule: a region of `array` ops over tensors
that one loop nest computes. The `fuse` pass writes it; `bufferize` gives it buffers;
`convert-kernels-to-loops` turns it into a kernel function. It comes in two forms:

* **tensor form** (after `fuse`): the operands are the stored values the kernel reads,
  the results the values it stores; `%s, %r = kernel.fused(%a, %b) ...`.
* **buffer form** (after `bufferize`): the operands are the flat buffers it reads,
  then the buffers it writes (`inputs`, `outputs`), and it has no results.

Syntax (the region's entry block names the values read):

    %s, %r = kernel.fused "fused" domain [2, 3] stores 1 ins(%x : tensor<2x3xf64>)
        -> (tensor<2x3xf64>, tensor<2xf64>) {
    ^0(%a : tensor<2x3xf64>):
      ...
      kernel.yield %e, %sum : tensor<2x3xf64>, tensor<2xf64>
    }
    kernel.fused "fused" domain [2, 3] stores 1 late [0] ins(%0 : memref<6xf64>)
        outs(%1, %2 : memref<6xf64>, memref<2xf64>) { ... }

In both, the region's block arguments are the values read, as tensors, and
`kernel.yield` ends it with the values written: first the `stores` stored values
(computed element by element), then the results of the reductions the kernel folds
in as accumulators (each a reduction op of the region whose operand is computed in
the region). The region reads nothing from above.

Properties: `kind` (a readable name: "elementwise", "reduce", "fused", "scan",
"scatter", "copy"); `domain` (a fused kernel's iteration domain, its shape without
size-1 dimensions; absent for a kernel of one special op, the last op of its region);
`stores`; `late` (buffer form: the stores written after every load of an iteration,
because they overwrite an input read at the same element).
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import (
    I64,
    DenseArrayBase,
    IntegerAttr,
    MemRefType,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.ir import Attribute, Block, Dialect, Region, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_op_definition,
    opt_prop_def,
    prop_def,
    region_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import HasParent, IsolatedFromAbove, IsTerminator
from xdsl.utils.exceptions import VerifyException

from pullback.compiler.dialects.array import i64_array


def _ints(attr: DenseArrayBase | None) -> tuple[int, ...]:
    return () if attr is None else tuple(int(x) for x in attr.get_values())


def _size(t: TensorType) -> int:
    n = 1
    for d in t.get_shape():
        n *= d
    return n


@irdl_op_definition
class FusedOp(IRDLOperation):
    """One kernel of the schedule: array ops computed by one loop nest (module docstring)."""

    name = "kernel.fused"

    inputs = var_operand_def()
    outputs = var_operand_def(MemRefType)
    values = var_result_def(TensorType)
    body = region_def("single_block")
    kind = prop_def(StringAttr)
    domain = opt_prop_def(DenseArrayBase)
    stores = prop_def(IntegerAttr[I64])
    late = opt_prop_def(DenseArrayBase)

    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    traits = traits_def(IsolatedFromAbove())

    def __init__(self, inputs: Sequence[SSAValue], outputs: Sequence[SSAValue],
                 result_types: Sequence[Attribute], body: Region, *, kind: str,
                 domain: Sequence[int] | None, stores: int,
                 late: Sequence[int] | None = None):
        props: dict[str, Attribute] = {"kind": StringAttr(kind),
                                       "stores": IntegerAttr(stores, i64)}
        if domain is not None:
            props["domain"] = i64_array(list(domain))
        if late:
            props["late"] = i64_array(list(late))
        super().__init__(operands=[list(inputs), list(outputs)], result_types=[list(result_types)],
                         regions=[body], properties=props)

    @property
    def block(self) -> Block:
        return self.body.block

    @property
    def yielded(self) -> tuple[SSAValue, ...]:
        """The values the region writes, in order (stores, then reduction results)."""
        last = self.block.last_op
        assert isinstance(last, YieldOp)
        return tuple(last.values)

    @property
    def domain_shape(self) -> tuple[int, ...] | None:
        return None if self.domain is None else _ints(self.domain)

    @property
    def late_stores(self) -> tuple[int, ...]:
        return _ints(self.late)

    @property
    def is_buffered(self) -> bool:
        """Whether the op is in buffer form (writes buffers, has no results)."""
        return not self.values

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_attribute(self.kind)
        if self.domain is not None:
            printer.print_string(f" domain [{', '.join(map(str, _ints(self.domain)))}]")
        printer.print_string(f" stores {self.stores.value.data}")
        if self.late is not None:
            printer.print_string(f" late [{', '.join(map(str, _ints(self.late)))}]")
        _print_group(printer, "ins", self.inputs)
        if self.outputs:
            _print_group(printer, "outs", self.outputs)
        if self.values:
            printer.print_string(" -> (")
            printer.print_list(self.result_types, printer.print_attribute)
            printer.print_string(")")
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=True)
        printer.print_op_attributes(self.attributes)

    @classmethod
    def parse(cls, parser: Parser) -> FusedOp:
        kind = parser.parse_str_literal()
        domain = late = None
        if parser.parse_optional_keyword("domain"):
            domain = _parse_ints(parser)
        parser.parse_keyword("stores")
        stores = parser.parse_integer()
        if parser.parse_optional_keyword("late"):
            late = _parse_ints(parser)
        inputs = _parse_group(parser, "ins")
        outputs = _parse_group(parser, None) if parser.parse_optional_keyword("outs") else []
        result_types: list[Attribute] = []
        if parser.parse_optional_punctuation("->"):
            result_types = parser.parse_comma_separated_list(
                Parser.Delimiter.PAREN, parser.parse_type)
        body = parser.parse_region()
        op = cls(inputs, outputs, result_types, body, kind=kind, domain=domain,
                 stores=stores, late=late)
        op.attributes |= parser.parse_optional_attr_dict()
        return op

    def verify_(self) -> None:
        block = self.body.block
        if len(block.args) != len(self.inputs):
            raise VerifyException(f"kernel.fused has {len(self.inputs)} inputs but its "
                                  f"region takes {len(block.args)} arguments")
        if not isinstance(block.last_op, YieldOp):
            raise VerifyException("kernel.fused's region must end in kernel.yield")
        written = self.yielded
        stores = self.stores.value.data
        if not 0 <= stores <= len(written):
            raise VerifyException(f"kernel.fused stores {stores} of {len(written)} yielded values")
        if self.values and self.outputs:
            raise VerifyException("kernel.fused has results (tensor form) or output "
                                  "buffers (buffer form), not both")
        targets = self.values if self.values else self.outputs
        if len(targets) != len(written):
            raise VerifyException(f"kernel.fused yields {len(written)} values for "
                                  f"{len(targets)} {'results' if self.values else 'outputs'}")
        for i, (arg, value) in enumerate(zip(block.args, self.inputs, strict=True)):
            _check_pair(arg.type, value.type, f"input {i}")
        for i, (value, target) in enumerate(zip(written, targets, strict=True)):
            _check_pair(value.type, target.type, f"written value {i}")
        if any(not 0 <= i < stores for i in self.late_stores):
            raise VerifyException(f"kernel.fused: late stores {self.late_stores} must "
                                  f"index its {stores} stores")
        if self.domain is None and len(written) != 1:
            raise VerifyException("kernel.fused without a domain computes one special op "
                                  f"and writes one value, not {len(written)}")


def _print_group(printer: Printer, keyword: str, values: Sequence[SSAValue]) -> None:
    printer.print_string(f" {keyword}(")
    printer.print_list(values, printer.print_ssa_value)
    if values:
        printer.print_string(" : ")
        printer.print_list((v.type for v in values), printer.print_attribute)
    printer.print_string(")")


def _parse_group(parser: Parser, keyword: str | None) -> list[SSAValue]:
    """`keyword(%a, %b : T, U)` (the keyword already read when None)."""
    if keyword is not None:
        parser.parse_keyword(keyword)
    parser.parse_punctuation("(")
    if parser.parse_optional_punctuation(")"):
        return []
    pos = parser.pos
    names = parser.parse_comma_separated_list(Parser.Delimiter.NONE,
                                              parser.parse_unresolved_operand)
    parser.parse_punctuation(":")
    types = parser.parse_comma_separated_list(Parser.Delimiter.NONE, parser.parse_type)
    parser.parse_punctuation(")")
    return parser.resolve_operands(names, types, pos)


def _parse_ints(parser: Parser) -> list[int]:
    return parser.parse_comma_separated_list(Parser.Delimiter.SQUARE, parser.parse_integer)


def _check_pair(tensor: Attribute, other: Attribute, what: str) -> None:
    """`other` is `tensor` itself (tensor form) or a flat buffer of its elements."""
    if not isinstance(tensor, TensorType):
        raise VerifyException(f"kernel.fused {what} must be a tensor in the region, got {tensor}")
    if other == tensor:
        return
    if isinstance(other, MemRefType) and other.get_shape() == (_size(tensor),):
        return
    raise VerifyException(f"kernel.fused {what}: {other} does not hold {tensor} "
                          f"(same tensor type, or memref<{_size(tensor)}x...>)")


@irdl_op_definition
class YieldOp(IRDLOperation):
    """The values a `kernel.fused` region writes."""

    name = "kernel.yield"
    values = var_operand_def(TensorType)
    traits = traits_def(IsTerminator(), HasParent(FusedOp))
    assembly_format = "($values^ `:` type($values))? attr-dict"

    def __init__(self, values: Sequence[SSAValue]):
        super().__init__(operands=[list(values)])


KernelDialect = Dialect("kernel", [FusedOp, YieldOp], [])


# -- the external functions kernel-level host functions call ---------------------

MATMUL_PREFIX = "pullback_matmul_"
HOST_CALL_PREFIX = "pullback_host_call_"


def matmul_symbol(element_type: Attribute) -> str:
    """The external matrix-product function for an element type:
    `(a, b, c: memref<?xT>, batch, m, n, k, trans_a, trans_b: i64)`."""
    return f"{MATMUL_PREFIX}{element_type}"


def host_call_symbol(element_type: Attribute) -> str:
    """The external host-call function for gradients of an element type:
    `(table: memref<?xi64>, slot, unreached, n: i64, src, dst: memref<?xT>)`."""
    return f"{HOST_CALL_PREFIX}{element_type}"
