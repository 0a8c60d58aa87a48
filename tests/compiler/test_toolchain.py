"""The C toolchain of exported libraries: found, used, and explained when missing."""

from __future__ import annotations

import ctypes
import importlib.util
import math
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from c_compilers import COMPILERS, use_compiler
from llvmlite import binding

from pullback.compiler.export import toolchain
from pullback.compiler.export.targets import resolve_target
from pullback.compiler.export.toolchain import (
    ToolchainError,
    build_executable,
    build_shared_library,
    find_c_compiler,
)

LIBRARY_C = r"""
#include <math.h>
#define API __attribute__((visibility("default")))
static double twice(double x) { return 2.0 * x; }
API double demo_f(double x) { return sqrt(x) + sin(twice(x)); }
API void demo_scale(double *xs, long n, double a) { for (long i = 0; i < n; i++) xs[i] *= a; }
API double unprefixed(double x) { return x; }
double hidden_by_default(double x) { return x; }
"""

PROGRAM_C = r"""
#include <stdio.h>
double demo_f(double x);
int main(void) { printf("%.17g\n", demo_f(0.75)); return 0; }
"""


def _f(x: float) -> float:
    return math.sqrt(x) + math.sin(2.0 * x)


def _needed(path: Path) -> list[str]:
    """The DT_NEEDED entries of the 64-bit little-endian ELF file at `path`."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic = [], None
    for i in range(phnum):
        kind, _, offset, vaddr, _, filesz, _, _ = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize)
        if kind == 1:
            loads.append((vaddr, offset, filesz))
        elif kind == 2:
            dynamic = (offset, filesz)
    assert dynamic is not None, "no dynamic segment"
    entries = [struct.unpack_from("<qQ", data, dynamic[0] + k)
               for k in range(0, dynamic[1], 16)]
    strtab_vaddr = next(value for tag, value in entries if tag == 5)
    strtab = next(off + strtab_vaddr - va for va, off, size in loads
                  if va <= strtab_vaddr < va + size)
    return [data[strtab + value:data.index(b"\0", strtab + value)].decode()
            for tag, value in entries if tag == 1]


@pytest.mark.parametrize("kind", COMPILERS)
def test_shared_library_builds_loads_and_runs(kind: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    use_compiler(monkeypatch, tmp_path / "empty", kind)
    cc = find_c_compiler()
    assert (cc[1:] == ["-m", "ziglang", "cc"]) == (kind == "ziglang")
    source = tmp_path / "demo.c"
    source.write_text(LIBRARY_C)
    library = tmp_path / "libdemo.so"
    build_shared_library(library, [source], [], exported_prefix="demo_")

    lib = ctypes.CDLL(str(library))
    lib.demo_f.restype = ctypes.c_double
    lib.demo_f.argtypes = [ctypes.c_double]
    for x in (0.0, 0.3, 2.5):
        assert lib.demo_f(x) == pytest.approx(_f(x), rel=1e-15, abs=1e-15)
    xs = (ctypes.c_double * 3)(1.0, -2.0, 0.5)
    lib.demo_scale(xs, ctypes.c_long(3), ctypes.c_double(4.0))
    assert list(xs) == [4.0, -8.0, 2.0]
    for name in ("unprefixed", "hidden_by_default", "twice"):
        assert not hasattr(lib, name), f"{name} is exported"
    assert set(_needed(library)) <= {"libc.so.6", "libm.so.6"}, _needed(library)


@pytest.mark.parametrize("kind", COMPILERS)
def test_executable_finds_its_library_without_library_path(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_compiler(monkeypatch, tmp_path / "empty", kind)
    (tmp_path / "lib").mkdir()
    source = tmp_path / "demo.c"
    source.write_text(LIBRARY_C)
    build_shared_library(tmp_path / "lib" / "libdemo.so", [source], [])
    program_c = tmp_path / "main.c"
    program_c.write_text(PROGRAM_C)
    program = tmp_path / "main"
    build_executable(program, [program_c], library_dirs=[tmp_path / "lib"],
                     libraries=["demo"])
    done = subprocess.run([str(program)], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert float(done.stdout) == pytest.approx(_f(0.75), rel=1e-15)


SUM_SQUARES_IR = """
define internal double @sum_squares(ptr %x, i64 %n) {
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %acc = phi double [ 0.0, %entry ], [ %sum, %loop ]
  %p = getelementptr double, ptr %x, i64 %i
  %v = load double, ptr %p
  %sq = fmul double %v, %v
  %sum = fadd double %acc, %sq
  %next = add i64 %i, 1
  %done = icmp eq i64 %next, %n
  br i1 %done, label %exit, label %loop
exit:
  ret double %sum
}
define double @demo_kernel(ptr %x, i64 %n) {
  %r = call double @sum_squares(ptr %x, i64 %n)
  ret double %r
}
"""

WRAPPER_C = r"""
#define API __attribute__((visibility("default")))
double demo_kernel(const double *x, long n);
API const char *demo_missing(void) { return cpu_ok(); }
API double demo_sum_squares(const double *x, long n) { return demo_kernel(x, n); }
"""


@pytest.mark.parametrize("kind", COMPILERS)
def test_llvm_object_links_with_c_and_cpu_check(kind: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    use_compiler(monkeypatch, tmp_path / "empty", kind)
    target = resolve_target("x86-64-v2")
    ref = binding.parse_assembly(SUM_SQUARES_IR)
    tm = target.target_machine()
    ref.triple = tm.triple
    ref.data_layout = str(tm.target_data)
    (tmp_path / "kernel.o").write_bytes(tm.emit_object(ref))
    (tmp_path / "wrapper.c").write_text(target.cpu_check_c("cpu_ok") + WRAPPER_C)
    library = tmp_path / "libdemo.so"
    build_shared_library(library, [tmp_path / "wrapper.c"], [tmp_path / "kernel.o"],
                         exported_prefix="demo_")

    lib = ctypes.CDLL(str(library))
    lib.demo_missing.restype = ctypes.c_char_p
    assert lib.demo_missing() is None
    lib.demo_sum_squares.restype = ctypes.c_double
    x = np.linspace(-1.0, 2.0, 37)
    got = lib.demo_sum_squares(x.ctypes.data_as(ctypes.c_void_p), ctypes.c_long(x.size))
    assert got == pytest.approx(float(np.sum(x * x)), rel=1e-14)
    assert hasattr(lib, "demo_sum_squares") and not hasattr(lib, "sum_squares")
    assert set(_needed(library)) <= {"libc.so.6", "libm.so.6"}, _needed(library)


def test_cc_variable_is_split_and_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    system = find_c_compiler()[0]
    monkeypatch.setenv("CC", f"{system} -DDEMO_SCALE=3")
    assert find_c_compiler() == [system, "-DDEMO_SCALE=3"]
    source = tmp_path / "k.c"
    source.write_text('__attribute__((visibility("default"))) int k(void) '
                      "{ return DEMO_SCALE; }\n")
    build_shared_library(tmp_path / "libk.so", [source], [])
    assert ctypes.CDLL(str(tmp_path / "libk.so")).k() == 3


def test_cc_naming_a_missing_program_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "no-such-compiler-xyz -O2")
    with pytest.raises(ToolchainError, match="CC='no-such-compiler-xyz -O2'.*fix CC or unset"):
        find_c_compiler()


def test_missing_compiler_says_what_to_install(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    use_compiler(monkeypatch, tmp_path, "ziglang")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ziglang" else real(name, *a))
    with pytest.raises(ToolchainError) as info:
        find_c_compiler()
    message = str(info.value)
    for needed in ("no C compiler found", "cc, gcc, clang", str(tmp_path),
                   'pip install "pullback[export]"', "gcc or clang", "set CC"):
        assert needed in message, (needed, message)
    with pytest.raises(ToolchainError, match="no C compiler found"):
        build_shared_library(tmp_path / "libx.so", [], [])


def test_compile_errors_carry_the_command_and_messages(tmp_path: Path) -> None:
    source = tmp_path / "broken.c"
    source.write_text("int f(void) { return undeclared_name; }\n")
    with pytest.raises(ToolchainError) as info:
        build_shared_library(tmp_path / "libbroken.so", [source], [])
    message = str(info.value)
    assert "-shared" in message and str(source) in message
    assert "undeclared_name" in message


def test_search_order_is_cc_gcc_clang_then_ziglang(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert toolchain.SYSTEM_COMPILERS == ("cc", "gcc", "clang")
    for name in ("clang", "gcc", "cc"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
        assert find_c_compiler() == [str(tmp_path / name)]
    for name in ("cc", "gcc", "clang"):
        (tmp_path / name).unlink()
    assert find_c_compiler()[1:] == ["-m", "ziglang", "cc"]
