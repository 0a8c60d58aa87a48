"""`@NAME__packed`: the host function, called with one array of buffer pointers.

A lowered host function takes one pointer per buffer (inputs, outputs, temporaries),
and a long unrolled program has thousands of temporaries: more arguments than a
foreign-function call can pass (ctypes accepts at most 1024). The packed entry takes
the address of an array holding those pointers in argument order, loads them and calls
the host function, so a caller passes one argument whatever the program's size.
"""

from __future__ import annotations

from llvmlite import ir

PACKED_SUFFIX = "__packed"


def packed_name(name: str) -> str:
    """The symbol of the packed entry of host function `name`."""
    return name + PACKED_SUFFIX


def add_packed_entry(module: ir.Module, name: str) -> None:
    """Define `@NAME__packed(ptr args)` in `module`, returning what `@NAME` returns."""
    target = module.get_global(name)
    signature = target.function_type
    pointer = ir.PointerType()
    if any(t != pointer for t in signature.args):
        raise ValueError(f"@{name} takes non-pointer arguments ({signature}); a packed entry "
                         "passes buffer pointers only")
    entry = ir.Function(module, ir.FunctionType(signature.return_type, [pointer]),
                        packed_name(name))
    builder = ir.IRBuilder(entry.append_basic_block("entry"))
    table = entry.args[0]
    args = [builder.load(builder.gep(table, [ir.Constant(ir.IntType(64), i)],
                                     inbounds=True, source_etype=pointer), typ=pointer)
            for i in range(len(signature.args))]
    result = builder.call(target, args)
    if isinstance(signature.return_type, ir.VoidType):
        builder.ret_void()
    else:
        builder.ret(result)
