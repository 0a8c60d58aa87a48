"""Statement writer: kernel-level regions (`scf`, `memref`, scalar ops) as OpenCL C.

Every SSA value becomes a `const` local named `vN` (constants are inlined as
literals); `scf.for` / `scf.parallel` / `scf.if` / `scf.while` become C loops and
branches whose carried and reduced values live in mutable locals (an `scf.parallel`
written here runs serially: each step combines its contribution by the ops of the
`scf.reduce` region). Buffers are flat `__global` pointers; a
statically shaped multi-dimensional memref is indexed row-major.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, MemRefType
from xdsl.ir import Block, Operation, Region, SSAValue

from pullback.compiler.backends.opencl.c_types import c_type, float_literal, int_literal
from pullback.compiler.backends.opencl.ops import code_for_op


def constant_literal(op: arith.ConstantOp) -> str:
    """The C literal of a scalar `arith.constant`."""
    value, t = op.value, op.result.type
    if isinstance(value, FloatAttr):
        return float_literal(value.value.data, t)
    if isinstance(value, IntegerAttr):
        return int_literal(value.value.data, t)
    raise NotImplementedError(f"arith.constant of {value} has no OpenCL C literal")


def has_writes(op: Operation) -> bool:
    """Whether `op` (or anything nested in it) writes memory or calls out."""
    return any(isinstance(o, memref.StoreOp | func.CallOp | memref.AllocaOp | memref.AllocOp)
               for o in op.walk())


class Writer:
    """Writes C statements for ops, tracking value names and indentation."""

    def __init__(self, names: dict[SSAValue, str] | None = None, depth: int = 1):
        self.names: dict[SSAValue, str] = dict(names or {})
        self.lines: list[str] = []
        self.depth = depth
        self._count = 0

    # -- names and lines ------------------------------------------------------

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def fresh(self, prefix: str = "v") -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def name(self, value: SSAValue) -> str:
        if value in self.names:
            return self.names[value]
        owner = value.owner
        if isinstance(owner, arith.ConstantOp):
            return constant_literal(owner)
        raise ValueError(f"value {value} used before it was written ({owner})")

    def define(self, value: SSAValue, expr: str) -> str:
        """`const T vN = expr;`, naming `value`."""
        name = self.fresh()
        self.line(f"const {c_type(value.type)} {name} = {expr};")
        self.names[value] = name
        return name

    def open(self, header: str) -> None:
        self.line(f"{header} {{" if header else "{")
        self.depth += 1

    def close(self) -> None:
        self.depth -= 1
        self.line("}")

    # -- ops ------------------------------------------------------------------

    def ops(self, ops: Iterable[Operation]) -> None:
        for op in ops:
            self.op(op)

    def body(self, block: Block) -> list[Operation]:
        """The ops of `block` but its terminator."""
        ops = list(block.ops)
        ends = scf.YieldOp | scf.ConditionOp | scf.ReduceOp | scf.ReduceReturnOp
        return ops[:-1] if ops and isinstance(ops[-1], ends) else ops

    def op(self, op: Operation) -> None:
        match op:
            case arith.ConstantOp():
                return
            case memref.LoadOp():
                self.define(op.res, f"{self.name(op.memref)}[{self.offset(op.memref, op.indices)}]")
            case memref.StoreOp():
                self.line(f"{self.name(op.memref)}[{self.offset(op.memref, op.indices)}] = "
                          f"{self.name(op.value)};")
            case memref.CastOp():
                self.names[op.dest] = self.name(op.source)
            case memref.AllocaOp():
                self._alloca(op)
            case scf.ForOp():
                self.for_loop(op)
            case scf.ParallelOp():
                self._parallel(op)
            case scf.IfOp():
                self._if(op)
            case scf.WhileOp():
                self._while(op)
            case func.ReturnOp() if not op.operands:
                return
            case _:
                if len(op.results) != 1 or op.regions:
                    raise NotImplementedError(
                        f"the OpenCL backend cannot translate '{op.name}' at kernel level")
                self.define(op.results[0], code_for_op(op, [self.name(v) for v in op.operands]))

    def offset(self, buffer: SSAValue, indices: Sequence[SSAValue]) -> str:
        """Row-major flat offset of `indices` into a statically shaped buffer."""
        names = [self.name(i) for i in indices]
        if len(names) == 1:
            return names[0]
        if not names:
            return "0"
        t = buffer.type
        assert isinstance(t, MemRefType)
        shape = t.get_shape()
        if any(d < 0 for d in shape[1:]):
            raise NotImplementedError(f"indexing {t} needs static inner dimensions")
        expr = names[0]
        for d, n in zip(shape[1:], names[1:], strict=True):
            expr = f"({expr} * {d}L + {n})"
        return expr

    def assign(self, targets: Sequence[str], values: Sequence[SSAValue]) -> None:
        """Parallel assignment of carried values (temporaries when several)."""
        exprs = [self.name(v) for v in values]
        if len(targets) == 1:
            if targets[0] != exprs[0]:
                self.line(f"{targets[0]} = {exprs[0]};")
            return
        temps = []
        for v, e in zip(values, exprs, strict=True):
            temps.append(self.fresh("t"))
            self.line(f"const {c_type(v.type)} {temps[-1]} = {e};")
        for t, tmp in zip(targets, temps, strict=True):
            self.line(f"{t} = {tmp};")

    def carried(self, values: Sequence[SSAValue], inits: Sequence[str | None]) -> list[str]:
        """Mutable locals for carried values, optionally initialised."""
        out = []
        for v, init in zip(values, inits, strict=True):
            name = self.fresh("r")
            self.line(f"{c_type(v.type)} {name}{'' if init is None else ' = ' + init};")
            self.names[v] = name
            out.append(name)
        return out

    def _open_for(self, iv: SSAValue, lb: SSAValue, ub: SSAValue, step: SSAValue) -> None:
        name = self.fresh("i")
        self.names[iv] = name
        self.open(f"for ({c_type(iv.type)} {name} = {self.name(lb)}; {name} < {self.name(ub)}; "
                  f"{name} += {self.name(step)})")

    def for_loop(self, op: scf.ForOp) -> None:
        """A serial C `for` over an `scf.for`."""
        body = op.body.block
        carried = self.carried(op.results, [self.name(v) for v in op.iter_args])
        for arg, name in zip(body.args[1:], carried, strict=True):
            self.names[arg] = name
        self._open_for(body.args[0], op.lb, op.ub, op.step)
        self.ops(self.body(body))
        assert isinstance(body.last_op, scf.YieldOp)
        self.assign(carried, list(body.last_op.operands))
        self.close()

    def open_dims(self, op: scf.ParallelOp, start: int = 0) -> int:
        """Serial C `for`s over the dimensions of `op` from `start`; returns how many
        were opened (close each)."""
        bounds = list(zip(op.body.block.args, op.lowerBound, op.upperBound, op.step,
                          strict=True))[start:]
        for iv, lb, ub, step in bounds:
            self._open_for(iv, lb, ub, step)
        return len(bounds)

    def combine(self, region: Region, a: str, b: str) -> str:
        """The name of what the combiner `region` of an `scf.reduce` computes from the
        values named `a` and `b`."""
        block = region.block
        self.names[block.args[0]], self.names[block.args[1]] = a, b
        self.ops(self.body(block))
        last = block.last_op
        assert isinstance(last, scf.ReduceReturnOp)
        return self.name(last.result)

    def accumulate(self, reduce: scf.ReduceOp, accs: Sequence[str]) -> None:
        """`acc = combiner(acc, contribution)` for each value `reduce` reduces."""
        values = [self.combine(region, acc, self.name(x))
                  for region, acc, x in zip(reduce.reductions, accs, reduce.args, strict=True)]
        for acc, value in zip(accs, values, strict=True):
            self.line(f"{acc} = {value};")

    def _parallel(self, op: scf.ParallelOp) -> None:
        accs = self.carried(op.res, [self.name(v) for v in op.initVals])
        depth = self.open_dims(op)
        self.ops(self.body(op.body.block))
        reduce = op.body.block.last_op
        assert isinstance(reduce, scf.ReduceOp)
        self.accumulate(reduce, accs)
        for _ in range(depth):
            self.close()

    def _if(self, op: scf.IfOp) -> None:
        results = self.carried(op.output, [None] * len(op.output))
        self.open(f"if ({self.name(op.cond)})")
        self._branch(op.true_region.blocks[0] if op.true_region.blocks else None, results)
        if op.false_region.blocks:
            self.depth -= 1
            self.open("} else")
            self._branch(op.false_region.blocks[0], results)
        self.close()

    def _branch(self, block: Block | None, results: list[str]) -> None:
        if block is None:
            return
        self.ops(self.body(block))
        if results:
            assert isinstance(block.last_op, scf.YieldOp)
            self.assign(results, list(block.last_op.operands))

    def _while(self, op: scf.WhileOp) -> None:
        before, after = op.before_region.block, op.after_region.block
        state = self.carried(before.args, [self.name(v) for v in op.arguments])
        results = self.carried(op.res, [None] * len(op.res))
        self.open("while (1)")
        self.ops(self.body(before))
        cond = before.last_op
        assert isinstance(cond, scf.ConditionOp)
        self.assign(results, list(cond.args))
        self.line(f"if (!{self.name(cond.condition)}) break;")
        for arg, name in zip(after.args, results, strict=True):
            self.names[arg] = name
        self.ops(self.body(after))
        assert isinstance(after.last_op, scf.YieldOp)
        self.assign(state, list(after.last_op.operands))
        self.close()

    def _alloca(self, op: memref.AllocaOp) -> None:
        t = op.memref.type
        assert isinstance(t, MemRefType)
        size = 1
        for d in t.get_shape():
            if d < 0:
                raise NotImplementedError(f"memref.alloca of {t} needs a static shape")
            size *= d
        name = self.fresh("m")
        self.line(f"{c_type(t.element_type)} {name}[{max(size, 1)}];")
        self.names[op.memref] = name
