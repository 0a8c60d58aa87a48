"""The target's `pullback_matmul_<T>(a, b, c, batch, m, n, k, trans_a, trans_b)` as kernels.

Row-major buffers; a transpose flag means that operand is stored transposed (A as
k x m, B as n x k). One kernel per (element type, flags), batch in NDRange dim 2.

* cpu: register blocking. Each work-item owns a 4 x 8 block of C held in four
  8-wide vector accumulators updated with `fma`; edge blocks clamp their loads and
  guard their stores. No local memory, no barriers (work-items run as a loop).
* gpu: 16 x 16 tiles of A and B staged in local memory, one C element per work-item.
"""

from __future__ import annotations

from pullback.compiler.backends.opencl.kernels import Launch

TM, TN, TILE = 4, 8, 16
_C = {"f64": "double", "f32": "float"}


def matmul_kernel_name(element: str, trans_a: bool, trans_b: bool) -> str:
    return f"pullback_matmul_{element}_{'t' if trans_a else 'n'}{'t' if trans_b else 'n'}"


def _a(trans: bool, i: str, p: str) -> str:
    return f"a[({p}) * m + ({i})]" if trans else f"a[({i}) * k + ({p})]"


def _b(trans: bool, p: str, j: str) -> str:
    return f"b[({j}) * k + ({p})]" if trans else f"b[({p}) * n + ({j})]"


def _header(name: str, t: str) -> str:
    return (f"__kernel void {name}(__global const {t}* restrict a, "
            f"__global const {t}* restrict b, __global {t}* restrict c, "
            "const long m, const long n, const long k)")


def matmul_source(element: str, trans_a: bool, trans_b: bool, style: str) -> str:
    """OpenCL C of the product kernel for one element type and pair of flags."""
    name = matmul_kernel_name(element, trans_a, trans_b)
    t = _C[element]
    body = _cpu(t, trans_a, trans_b) if style == "cpu" else _gpu(t, trans_a, trans_b)
    return f"/* matrix product, {style} style */\n{_header(name, t)} {{\n{body}}}\n"


def _cpu(t: str, ta: bool, tb: bool) -> str:
    v = f"{t}{TN}"
    lines = [
        f"const long j0 = get_global_id(0) * {TN};",
        f"const long i0 = get_global_id(1) * {TM};",
        "if (i0 >= m || j0 >= n) return;",
        "const long z = get_global_id(2);",
        "a += z * m * k; b += z * k * n; c += z * m * n;",
    ]
    lines += [f"const long r{r} = min(i0 + {r}, m - 1);" for r in range(TM)]
    lines += [f"{v} acc{r} = ({v})(0);" for r in range(TM)]
    full_b = (f"({v})({', '.join(_b(tb, 'p', f'j0 + {q}') for q in range(TN))})" if tb
              else f"vload{TN}(0, b + p * n + j0)")
    edge_b = f"({v})({', '.join(_b(tb, 'p', f'min(j0 + {q}, n - 1)') for q in range(TN))})"
    update = [f"    acc{r} = fma(({v})({_a(ta, f'r{r}', 'p')}), bv, acc{r});" for r in range(TM)]
    lines += [f"if (j0 + {TN} <= n) {{", "  for (long p = 0; p < k; ++p) {",
              f"    const {v} bv = {full_b};", *update, "  }", "} else {",
              "  for (long p = 0; p < k; ++p) {", f"    const {v} bv = {edge_b};", *update,
              "  }", "}", f"if (j0 + {TN} <= n) {{"]
    for r in range(TM):
        lines.append(f"  if (i0 + {r} < m) vstore{TN}(acc{r}, 0, c + (i0 + {r}) * n + j0);")
    lines += ["} else {", f"  {t} row[{TN}];"]
    for r in range(TM):
        lines += [f"  if (i0 + {r} < m) {{", f"    vstore{TN}(acc{r}, 0, row);",
                  f"    for (long q = 0; j0 + q < n; ++q) c[(i0 + {r}) * n + j0 + q] = row[q];",
                  "  }"]
    lines.append("}")
    return "".join(f"    {line}\n" for line in lines)


def _gpu(t: str, ta: bool, tb: bool) -> str:
    lines = [
        "const int tx = get_local_id(0), ty = get_local_id(1);",
        f"const long col = get_group_id(0) * {TILE} + tx;",
        f"const long row = get_group_id(1) * {TILE} + ty;",
        "const long z = get_global_id(2);",
        "a += z * m * k; b += z * k * n; c += z * m * n;",
        f"__local {t} as[{TILE}][{TILE}];",
        f"__local {t} bs[{TILE}][{TILE + 1}];",
        f"{t} acc = 0;",
        f"for (long p0 = 0; p0 < k; p0 += {TILE}) {{",
        f"  as[ty][tx] = (row < m && p0 + tx < k) ? {_a(ta, 'row', 'p0 + tx')} : 0;",
        f"  bs[ty][tx] = (p0 + ty < k && col < n) ? {_b(tb, 'p0 + ty', 'col')} : 0;",
        "  barrier(CLK_LOCAL_MEM_FENCE);",
        f"  for (int q = 0; q < {TILE}; ++q) acc = fma(as[ty][q], bs[q][tx], acc);",
        "  barrier(CLK_LOCAL_MEM_FENCE);",
        "}",
        "if (row < m && col < n) c[row * n + col] = acc;",
    ]
    return "".join(f"    {line}\n" for line in lines)


def _pad(x: int, to: int) -> int:
    return -(-x // to) * to


def _pow2_at_most(limit: int, want: int) -> int:
    n = 1
    while n * 2 <= limit and n < want:
        n *= 2
    return n


def matmul_launch(element: str, trans_a: bool, trans_b: bool, style: str, batch: int, m: int,
                  n: int) -> Launch:
    """The NDRange of one product (global sizes padded to the local ones)."""
    name = matmul_kernel_name(element, trans_a, trans_b)
    if style == "cpu":
        cols, rows = -(-n // TN), -(-m // TM)
        lx, ly = _pow2_at_most(8, cols), _pow2_at_most(4, rows)
        return Launch(name, (_pad(cols, lx), _pad(rows, ly), batch), (lx, ly, 1), "matmul")
    return Launch(name, (_pad(n, TILE), _pad(m, TILE), batch), (TILE, TILE, 1), "matmul")
