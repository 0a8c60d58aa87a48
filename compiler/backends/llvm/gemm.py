"""Matrix products on the CPU in generated code: `pullback_matmul_<T>` with no calls.

An exported library may depend on nothing but libc and libm, so it cannot call
BLAS (see `blas.py`). `define_own_matmul` gives the declared kernel-level
`pullback_matmul_<T>` a body of plain LLVM IR with the same contract:
`(a, b, c, batch, m, n, k, trans_a, trans_b)`, row-major buffers, for each of
`batch` products C[p] = op(A[p]) @ op(B[p]) with C overwritten; `trans_a` means A
is stored (k x m), `trans_b` means B is stored (n x k).

Structure (a GEMM in the style of BLIS, written in explicit vectors so the code
does not depend on what the loop vectoriser finds):

* k is cut in blocks of `kc` rows of op(B); n in panels of `nr` columns (`nv`
  vectors of `w` lanes). Each (k block, panel) of op(B) is packed into one fixed
  32 KB stack buffer, `kc x nr`, row-contiguous and zero-padded past n: with
  masked row loads when B is stored (k x n), masked gathers down its rows when it
  is stored (n x k). The micro-kernel reads the panel with plain vector loads.
  A last panel of at most `w` columns takes one vector per tile row (`nv = 1`),
  which halves the wasted lanes of narrow products such as 1000 x 10 x 10.
* The micro-kernel computes an `mr x nr` tile of C in `mr * nv` vector
  accumulators kept in registers over the k block: per step, `nv` vector loads of
  the packed panel, `mr` scalar loads of A broadcast to vectors, `mr * nv`
  multiply-adds (`llvm.fmuladd`: fused where the target has FMA, never a call).
* The tile is read and written with masked vector loads and stores, so edges
  (rows past m, columns past n) need no separate code path; A rows past m are
  clamped to the last row (valid memory, results never stored). The first k block
  starts from zero instead of C (beta = 0), and a product with k = 0 runs one
  empty block, which writes zeros.

* A matrix-vector product (n = 1, or m = 1: then C^T = op(B)^T A^T) would fill one
  lane of each vector of a panel; it takes a path of its own over the matrix
  operand M. With M's rows contiguous, `mr` rows at a time are dot products with
  the vector, `w` partial sums per row (masked loads past k) added up at the end;
  with its columns contiguous, blocks of 4 vectors of C accumulate whole columns
  times a broadcast element of the vector, in k order.

Only multiply-adds of the true terms reach C, in k order per element (the dot
products: in `w` interleaved partial sums): results differ from the exact sum only
by rounding in that order. Nothing here allocates
on the heap, spawns threads or calls a function; the loops are shaped so that
LLVM's idiom recognition cannot turn them into `memcpy`/`memset` calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from llvmlite import binding, ir

_I1 = ir.IntType(1)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_PTR = ir.PointerType()
_ELEMENTS = {"f64": (ir.DoubleType(), 8), "f32": (ir.FloatType(), 4)}  # scalar type, bytes
_PACK_BYTES = 32 * 1024  # the packed panel of op(B): about the size of an L1 data cache
_AXPY_VECTORS = 4  # vectors of y per block of a matrix-vector product with contiguous columns


@dataclass(frozen=True)
class Tiling:
    """Block sizes: tiles of `mr` rows x `nv` vectors of `w` lanes, `kc` k per block."""

    w: int
    mr: int
    nv: int
    kc: int

    @property
    def nr(self) -> int:
        return self.nv * self.w


def vector_bits_for(features: Iterable[str]) -> int:
    """The widest vector registers the generated code should use on a CPU with `features`
    (LLVM's feature names, for instance an export target's): 512, 256 or 128."""
    enabled = set(features)
    if "avx512f" in enabled:
        return 512
    if "avx" in enabled:
        return 256
    return 128


def host_vector_bits() -> int:
    """`vector_bits_for` the host CPU."""
    try:
        host = binding.get_host_cpu_features()
    except RuntimeError:  # LLVM cannot read this CPU's features
        return 128
    return vector_bits_for(name for name, on in host.items() if on)


def tiling(element: str, vector_bits: int) -> Tiling:
    """Block sizes for `element` with `vector_bits`-wide registers.

    The accumulators (`mr * nv` vectors) plus the panel vectors and one broadcast
    must fit the register file: 32 registers with AVX-512, 16 below it.
    """
    if element not in _ELEMENTS:
        raise ValueError(f"matrix product element must be one of {sorted(_ELEMENTS)}, "
                         f"got {element!r}")
    if vector_bits not in (128, 256, 512):
        raise ValueError(f"vector_bits must be 128, 256 or 512, got {vector_bits}")
    size = _ELEMENTS[element][1]
    w = vector_bits // (8 * size)
    mr = {512: 8, 256: 6, 128: 4}[vector_bits]
    nv = 2
    return Tiling(w=w, mr=mr, nv=nv, kc=_PACK_BYTES // (nv * w * size))


def define_own_matmul(module: ir.Module, element: str, vector_bits: int | None = None,
                      *, symbol: str | None = None) -> None:
    """Give the declared `pullback_matmul_<element>` in `module` a self-contained body.

    `vector_bits` sets the vector width of the generated code (default: the host's; for
    another target pass `vector_bits_for(its features)`). Any width computes the same
    results; a width above the target's is split by LLVM, which spills registers.
    `symbol` names another declared function of the same signature to define instead.
    """
    t = tiling(element, host_vector_bits() if vector_bits is None else vector_bits)
    name = symbol or f"pullback_matmul_{element}"
    fn = module.globals.get(name)
    if not isinstance(fn, ir.Function) or not fn.is_declaration:
        raise ValueError(f"the module has no declared {name} to define")
    fn.linkage = "internal"
    _Gemm(module, fn, element, t).build()


def _c64(v: int) -> ir.Constant:
    return ir.Constant(_I64, v)


class _Gemm:
    """Emits the body of one matmul function; one method per loop level."""

    def __init__(self, module: ir.Module, fn: ir.Function, element: str, t: Tiling) -> None:
        self.fn, self.t = fn, t
        self.scalar, self.align = _ELEMENTS[element]
        self.vec = ir.VectorType(self.scalar, t.w)
        mask = ir.VectorType(_I1, t.w)
        suffix = f"v{t.w}{element}"
        self.fmuladd = _intrinsic(module, f"llvm.fmuladd.{suffix}", self.vec, [self.vec] * 3)
        # The form with an alignment operand: older LLVMs take it, newer ones upgrade it.
        self.masked_load = _intrinsic(module, f"llvm.masked.load.{suffix}.p0", self.vec,
                                      [_PTR, _I32, mask, self.vec])
        self.masked_store = _intrinsic(module, f"llvm.masked.store.{suffix}.p0", ir.VoidType(),
                                       [self.vec, _PTR, _I32, mask])
        self.gather = _intrinsic(module, f"llvm.masked.gather.{suffix}.v{t.w}p0", self.vec,
                                 [ir.VectorType(_PTR, t.w), _I32, mask, self.vec])
        self.reduce_add = _intrinsic(module, f"llvm.vector.reduce.fadd.{suffix}", self.scalar,
                                     [self.scalar, self.vec])
        self.zero = ir.Constant(self.vec, None)
        self.no_lanes = ir.Constant(mask, None)
        self.lanes = ir.Constant(ir.VectorType(_I64, t.w), list(range(t.w)))
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))

    # -- helpers ---------------------------------------------------------------------

    def loop(self, start: ir.Value, stop: ir.Value, step: int,
             body: Callable[[ir.Value], None]) -> None:
        """`for (i = start; i < stop; i += step) body(i)`, continuing after the loop."""
        b = self.b
        head = self.fn.append_basic_block("head")
        inner = self.fn.append_basic_block("body")
        after = self.fn.append_basic_block("after")
        before = b.block
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(_I64)
        i.add_incoming(start, before)
        b.cbranch(b.icmp_signed("<", i, stop), inner, after)
        b.position_at_end(inner)
        body(i)
        i.add_incoming(b.add(i, _c64(step)), b.block)
        b.branch(head)
        b.position_at_end(after)

    def branch_on(self, condition: ir.Value, if_true: Callable[[], None],
                  if_false: Callable[[], None]) -> None:
        """`if (condition) if_true() else if_false()`, continuing after both."""
        b = self.b
        yes = self.fn.append_basic_block("then")
        no = self.fn.append_basic_block("else")
        after = self.fn.append_basic_block("endif")
        b.cbranch(condition, yes, no)
        for block, emit in ((yes, if_true), (no, if_false)):
            b.position_at_end(block)
            emit()
            b.branch(after)
        b.position_at_end(after)

    def min(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.select(self.b.icmp_signed("<", x, y), x, y)

    def at(self, base: ir.Value, index: ir.Value | int) -> ir.Value:
        """The address of element `index` of `base`."""
        return self.b.gep(base, [_c64(index) if isinstance(index, int) else index],
                          source_etype=self.scalar)

    def splat(self, x: ir.Value, vector: ir.VectorType) -> ir.Value:
        """`x` in every lane of a `vector`."""
        one = self.b.insert_element(ir.Constant(vector, None), x, _c64(0))
        return self.b.shuffle_vector(one, ir.Constant(vector, None),
                                     ir.Constant(ir.VectorType(_I32, self.t.w), None))

    def lanes_below(self, count: ir.Value, offset: int) -> ir.Value:
        """The mask of lanes `l` with `offset + l < count`."""
        limit = self.b.sub(count, _c64(offset))
        return self.b.icmp_signed("<", self.lanes, self.splat(limit, self.lanes.type))

    def load_masked(self, ptr: ir.Value, mask: ir.Value) -> ir.Value:
        return self.b.call(self.masked_load, [ptr, ir.Constant(_I32, self.align), mask, self.zero])

    def store_masked(self, value: ir.Value, ptr: ir.Value, mask: ir.Value) -> None:
        self.b.call(self.masked_store, [value, ptr, ir.Constant(_I32, self.align), mask])

    # -- loop levels -------------------------------------------------------------------

    def build(self) -> None:
        b, t = self.b, self.t
        a, bm, c, batch, m, n, k, ta, tb = self.fn.args
        self.m, self.n, self.k = m, n, k
        self.pack = b.alloca(self.scalar, size=_c64(t.kc * t.nr))
        self.pack.align = 64
        self.pack.type = _PTR  # opaque like the arguments, so vectors can be stored through it
        self.trans_b = b.icmp_signed("!=", tb, _c64(0))
        trans_a = b.icmp_signed("!=", ta, _c64(0))
        # A(i, p) = a[i * row_step + p * col_step]
        self.a_row_step = b.select(trans_a, _c64(1), k)
        self.a_col_step = b.select(trans_a, m, _c64(1))
        k_stop = b.select(b.icmp_signed(">", k, _c64(0)), k, _c64(1))  # k = 0: one empty block
        size_a, size_b, size_c = b.mul(m, k), b.mul(k, n), b.mul(m, n)

        # op(B)(p, j) = b[p * b_col_step + j * b_row_step], seen as a matrix (j, p)
        b_row_step = b.select(self.trans_b, k, _c64(1))
        b_col_step = b.select(self.trans_b, _c64(1), n)

        def product(p: ir.Value) -> None:
            self.pa = self.at(a, self.b.mul(p, size_a))
            self.pb = self.at(bm, self.b.mul(p, size_b))
            self.pc = self.at(c, self.b.mul(p, size_c))

            def by_columns() -> None:  # C (1 x n) = A (a k-vector) @ op(B): rows j of op(B)^T
                self.branch_on(self.b.icmp_signed("==", m, _c64(1)),
                               lambda: self.matvec(self.pb, b_row_step, b_col_step, n, self.pa),
                               lambda: self.loop(_c64(0), k_stop, t.kc, self.k_block))

            self.branch_on(self.b.icmp_signed("==", n, _c64(1)),  # C (m x 1) = op(A) @ b
                           lambda: self.matvec(self.pa, self.a_row_step, self.a_col_step, m,
                                               self.pb),
                           by_columns)

        self.loop(_c64(0), batch, 1, product)
        self.b.ret_void()

    # -- matrix-vector products --------------------------------------------------------

    def matvec(self, base: ir.Value, row_step: ir.Value, col_step: ir.Value,
               rows: ir.Value, vector: ir.Value) -> None:
        """y[i] = sum_p M(i, p) vector[p] into C, M(i, p) = base[i row_step + p col_step],
        one of the steps 1: a product with n = 1 or m = 1, whose one-column panel
        would fill one lane in `w`. Rows contiguous: dot products along them;
        columns contiguous: multiply-adds of whole columns, vectorised over i."""
        self.branch_on(self.b.icmp_signed("==", col_step, _c64(1)),
                       lambda: self.loop(_c64(0), rows, self.t.mr,
                                         lambda i0: self.dots(base, row_step, rows, vector, i0)),
                       lambda: self.loop(_c64(0), rows, _AXPY_VECTORS * self.t.w,
                                         lambda i0: self.columns(base, col_step, rows, vector,
                                                                 i0)))

    def lanes_from(self, count: ir.Value, start: ir.Value) -> ir.Value:
        """The mask of lanes `l` with `start + l < count`."""
        limit = self.b.sub(count, start)
        return self.b.icmp_signed("<", self.lanes, self.splat(limit, self.lanes.type))

    def dots(self, base: ir.Value, row_step: ir.Value, rows: ir.Value, vector: ir.Value,
             i0: ir.Value) -> None:
        """y[i0 : i0 + mr] as dot products of contiguous rows (rows past the end read
        the last one, their sums are not stored); `w` partial sums per row, added up
        at the end."""
        b, w, mr = self.b, self.t.w, self.t.mr
        last = b.sub(rows, _c64(1))
        starts = [self.at(base, b.mul(self.min(b.add(i0, _c64(r)), last), row_step))
                  for r in range(mr)]
        before = b.block
        head = self.fn.append_basic_block("dot_head")
        inner = self.fn.append_basic_block("dot_body")
        after = self.fn.append_basic_block("dot_after")
        b.branch(head)
        b.position_at_end(head)
        p = b.phi(_I64)
        p.add_incoming(_c64(0), before)
        acc = []
        for _ in range(mr):
            phi = b.phi(self.vec)
            phi.add_incoming(self.zero, before)
            acc.append(phi)
        b.cbranch(b.icmp_signed("<", p, self.k), inner, after)
        b.position_at_end(inner)
        mask = self.lanes_from(self.k, p)
        v = self.load_masked(self.at(vector, p), mask)
        new = [b.call(self.fmuladd, [self.load_masked(self.at(start, p), mask), v, acc[r]])
               for r, start in enumerate(starts)]
        latch = b.block
        p.add_incoming(b.add(p, _c64(w)), latch)
        for phi, value in zip(acc, new, strict=True):
            phi.add_incoming(value, latch)
        b.branch(head)
        b.position_at_end(after)
        for r in range(mr):
            total = b.call(self.reduce_add, [ir.Constant(self.scalar, 0.0), acc[r]])
            row = b.add(i0, _c64(r))
            self.branch_on(b.icmp_signed("<", row, rows),
                           lambda row=row, total=total: self.b.store(
                               total, self.at(self.pc, row), align=self.align),
                           lambda: None)

    def columns(self, base: ir.Value, col_step: ir.Value, rows: ir.Value, vector: ir.Value,
                i0: ir.Value) -> None:
        """y[i0 : i0 + _AXPY_VECTORS w] += M(i, p) vector[p] for p in order, M's columns
        contiguous: masked vector loads of each column, stores masked past `rows`."""
        b, w = self.b, self.t.w
        masks = [self.lanes_from(rows, b.add(i0, _c64(u * w))) for u in range(_AXPY_VECTORS)]
        before = b.block
        head = self.fn.append_basic_block("axpy_head")
        inner = self.fn.append_basic_block("axpy_body")
        after = self.fn.append_basic_block("axpy_after")
        b.branch(head)
        b.position_at_end(head)
        p = b.phi(_I64)
        p.add_incoming(_c64(0), before)
        acc = []
        for _ in range(_AXPY_VECTORS):
            phi = b.phi(self.vec)
            phi.add_incoming(self.zero, before)
            acc.append(phi)
        b.cbranch(b.icmp_signed("<", p, self.k), inner, after)
        b.position_at_end(inner)
        x = self.splat(b.load(self.at(vector, p), typ=self.scalar, align=self.align), self.vec)
        column = self.at(base, b.add(b.mul(p, col_step), i0))
        new = [b.call(self.fmuladd, [self.load_masked(self.at(column, u * w), masks[u]), x,
                                     acc[u]])
               for u in range(_AXPY_VECTORS)]
        latch = b.block
        p.add_incoming(b.add(p, _c64(1)), latch)
        for phi, value in zip(acc, new, strict=True):
            phi.add_incoming(value, latch)
        b.branch(head)
        b.position_at_end(after)
        for u in range(_AXPY_VECTORS):
            self.store_masked(acc[u], self.at(self.pc, b.add(i0, _c64(u * w))), masks[u])

    def k_block(self, k0: ir.Value) -> None:
        self.k0 = k0
        self.kc = self.min(_c64(self.t.kc), self.b.sub(self.k, k0))
        self.first = self.b.icmp_signed("==", k0, _c64(0))
        self.loop(_c64(0), self.n, self.t.nr, self.panel)

    def panel(self, j0: ir.Value) -> None:
        """Columns j0 : j0 + nr of C; a last panel of at most `w` columns takes one vector
        per tile row, which halves the wasted lanes of narrow products."""
        b, t = self.b, self.t
        self.j0 = j0
        self.n_valid = n_valid = b.sub(self.n, j0)

        def columns(nv: int) -> Callable[[], None]:
            def emit() -> None:
                self.nv, self.nr = nv, nv * t.w
                self.col_masks = [self.lanes_below(n_valid, v * t.w) for v in range(nv)]
                self.branch_on(self.trans_b, self.pack_transposed, self.pack_normal)
                self.loop(_c64(0), self.m, t.mr, self.tile)
            return emit

        self.branch_on(b.icmp_signed("<=", n_valid, _c64(t.w)), columns(1), columns(t.nv))

    def pack_normal(self) -> None:
        """pack[p][j] = b[k0 + p][j0 + j], B stored (k x n): masked row loads."""

        def row(p: ir.Value) -> None:
            b = self.b
            src = self.at(self.pb, b.add(b.mul(b.add(self.k0, p), self.n), self.j0))
            dst = self.at(self.pack, b.mul(p, _c64(self.nr)))
            for v in range(self.nv):
                value = self.load_masked(self.at(src, v * self.t.w), self.col_masks[v])
                b.store(value, self.at(dst, v * self.t.w), align=self.align)

        self.loop(_c64(0), self.kc, 1, row)

    def pack_transposed(self) -> None:
        """pack[p][j] = b[j0 + j][k0 + p], B stored (n x k): masked gathers down columns."""
        b, w = self.b, self.t.w
        lanes_k = b.mul(self.lanes, self.splat(self.k, self.lanes.type))
        # lane l of vector v reads b[(j0 + v w + l) k + k0 + p]
        starts = [b.add(lanes_k, self.splat(b.add(b.mul(b.add(self.j0, _c64(v * w)), self.k),
                                                  self.k0), self.lanes.type))
                  for v in range(self.nv)]

        def row(p: ir.Value) -> None:
            b = self.b
            dst = self.at(self.pack, b.mul(p, _c64(self.nr)))
            step = self.splat(p, self.lanes.type)
            for v in range(self.nv):
                addresses = b.gep(self.pb, [b.add(starts[v], step)], source_etype=self.scalar)
                addresses.type = ir.VectorType(_PTR, w)  # one address per lane
                value = b.call(self.gather, [addresses, ir.Constant(_I32, self.align),
                                             self.col_masks[v], self.zero])
                b.store(value, self.at(dst, v * w), align=self.align)

        self.loop(_c64(0), self.kc, 1, row)

    def tile(self, i0: ir.Value) -> None:
        """C[i0 : i0 + mr, j0 : j0 + nr] (+)= A[i0 : i0 + mr, k block] @ pack."""
        b, mr, nv, w = self.b, self.t.mr, self.nv, self.t.w
        last_row = b.sub(self.m, _c64(1))
        rows_valid = b.sub(self.m, i0)
        a_start = b.mul(self.k0, self.a_col_step)
        a_rows, c_rows, masks = [], [], []
        for r in range(mr):
            row = self.min(b.add(i0, _c64(r)), last_row)  # rows past m read the last one
            a_rows.append(self.at(self.pa, b.add(b.mul(row, self.a_row_step), a_start)))
            c_rows.append(self.at(self.pc, b.add(b.mul(row, self.n), self.j0)))
            row_valid = b.icmp_signed("<", _c64(r), rows_valid)
            masks.append([b.select(row_valid, cm, self.no_lanes) for cm in self.col_masks])
        acc = [self.load_masked(self.at(c_rows[r], v * w),
                                b.select(self.first, self.no_lanes, masks[r][v]))
               for r in range(mr) for v in range(nv)]
        acc = self.k_loop(a_rows, acc)
        for r in range(mr):
            for v in range(nv):
                self.store_masked(acc[r * nv + v], self.at(c_rows[r], v * w), masks[r][v])

    def k_loop(self, a_rows: list[ir.Value], acc0: list[ir.Value]) -> list[ir.Value]:
        """Run the accumulators over the k block; returns their final values."""
        b, w = self.b, self.t.w
        before = b.block
        head = self.fn.append_basic_block("k_head")
        inner = self.fn.append_basic_block("k_body")
        after = self.fn.append_basic_block("k_after")
        b.branch(head)
        b.position_at_end(head)
        p = b.phi(_I64)
        p.add_incoming(_c64(0), before)
        acc = []
        for value in acc0:
            phi = b.phi(self.vec)
            phi.add_incoming(value, before)
            acc.append(phi)
        b.cbranch(b.icmp_signed("<", p, self.kc), inner, after)
        b.position_at_end(inner)
        panel = self.at(self.pack, b.mul(p, _c64(self.nr)))
        cols = [b.load(self.at(panel, v * w), typ=self.vec, align=self.align)
                for v in range(self.nv)]
        a_offset = b.mul(p, self.a_col_step)
        new = []
        for r, a_row in enumerate(a_rows):
            a_r = b.load(self.at(a_row, a_offset), typ=self.scalar, align=self.align)
            a_r = self.splat(a_r, self.vec)
            for v in range(self.nv):
                new.append(b.call(self.fmuladd, [a_r, cols[v], acc[r * self.nv + v]]))
        latch = b.block
        p.add_incoming(b.add(p, _c64(1)), latch)
        for phi, value in zip(acc, new, strict=True):
            phi.add_incoming(value, latch)
        b.branch(head)
        b.position_at_end(after)
        return list(acc)


def _intrinsic(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    existing = module.globals.get(name)
    if isinstance(existing, ir.Function):
        return existing
    return ir.Function(module, ir.FunctionType(ret, args), name=name)
