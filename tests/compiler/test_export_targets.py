"""Export targets: names resolved to LLVM CPUs and features, and the run-time CPU check.

The check is compiled into small C programs and compared with the features the
operating system reports in /proc/cpuinfo.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from c_compilers import COMPILERS, use_compiler
from llvmlite import binding

from pullback.compiler.export import targets
from pullback.compiler.export.cpu_features import BASELINE, CHECKED, FEATURES
from pullback.compiler.export.targets import LEVELS, Target, cpu_check_c, resolve_target
from pullback.compiler.export.toolchain import build_executable, find_c_compiler

LINUX_FLAG = {
    "sse3": "pni", "ssse3": "ssse3", "sse4.1": "sse4_1", "sse4.2": "sse4_2",
    "crc32": "sse4_2", "popcnt": "popcnt", "cx16": "cx16", "sahf": "lahf_lm",
    "avx": "avx", "avx2": "avx2", "bmi": "bmi1", "bmi2": "bmi2", "f16c": "f16c",
    "fma": "fma", "lzcnt": "abm", "movbe": "movbe", "xsave": "xsave",
    "avx512f": "avx512f", "avx512bw": "avx512bw", "avx512cd": "avx512cd",
    "avx512dq": "avx512dq", "avx512vl": "avx512vl", "pclmul": "pclmulqdq", "aes": "aes",
    "sha": "sha_ni", "adx": "adx", "rdrnd": "rdrand", "rdseed": "rdseed",
    "prfchw": "3dnowprefetch", "xsaveopt": "xsaveopt", "xsavec": "xsavec",
    "clflushopt": "clflushopt", "clwb": "clwb", "rdpid": "rdpid", "cldemote": "cldemote",
    "movdiri": "movdiri", "movdir64b": "movdir64b", "serialize": "serialize",
    "gfni": "gfni", "vaes": "vaes", "vpclmulqdq": "vpclmulqdq", "avxvnni": "avx_vnni",
    "avxifma": "avx_ifma", "avx512ifma": "avx512ifma", "avx512vbmi": "avx512vbmi",
    "avx512vbmi2": "avx512_vbmi2", "avx512vnni": "avx512_vnni",
    "avx512bitalg": "avx512_bitalg", "avx512vpopcntdq": "avx512_vpopcntdq",
    "avx512vp2intersect": "avx512_vp2intersect", "avx512bf16": "avx512_bf16",
    "avx512fp16": "avx512_fp16", "sse4a": "sse4a", "fma4": "fma4", "xop": "xop",
    "tbm": "tbm",
}
"""The Linux /proc/cpuinfo flag of each checkable feature."""

STRICT_C = ["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror"]


def _cpuinfo_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    raise AssertionError("/proc/cpuinfo has no flags line")


def _run_checks(tmp_path: Path, checks: dict[str, list[str]]) -> dict[str, str]:
    """Compile one C program with a check per entry of `checks`; what each returns."""
    source = [cpu_check_c(f"check_{i}", required) for i, required in enumerate(checks.values())]
    calls = "\n".join(f'    r = check_{i}(); printf("%s %s\\n", "{key}", r ? r : "-");'
                      for i, key in enumerate(checks))
    main = (f"#include <stdio.h>\nint main(void)\n{{\n    const char *r;\n{calls}\n"
            "    return 0;\n}\n")
    (tmp_path / "checks.c").write_text("\n".join(source) + main)
    build_executable(tmp_path / "checks", [tmp_path / "checks.c"], flags=STRICT_C)
    out = subprocess.run([str(tmp_path / "checks")], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_table_is_consistent_and_named_as_llvm_names_features() -> None:
    assert set(LINUX_FLAG) == set(CHECKED) and len(CHECKED) == len(FEATURES)
    known = set(binding.get_host_cpu_features())
    assert set(CHECKED) <= known, set(CHECKED) - known
    assert BASELINE - {"x87", "nopl"} <= known
    order = list(CHECKED)
    for f in FEATURES:
        assert set(f.implies) <= set(CHECKED), f
        assert all(order.index(g) < order.index(f.name) for g in f.implies), f
    for level, required in LEVELS.items():
        assert set(required) <= set(CHECKED), level


@pytest.mark.parametrize("kind", COMPILERS)
def test_check_agrees_with_cpuinfo_for_every_feature(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_compiler(monkeypatch, tmp_path / "empty", kind)
    results = _run_checks(tmp_path, {f.name: [f.name] for f in FEATURES})
    flags = _cpuinfo_flags()
    for f in FEATURES:
        present = LINUX_FLAG[f.name] in flags
        assert results[f.name] == ("-" if present else f.name), (f.name, present)


def test_missing_feature_is_named_in_order(tmp_path: Path) -> None:
    flags = _cpuinfo_flags()
    missing = [f.name for f in FEATURES if LINUX_FLAG[f.name] not in flags]
    present = [f.name for f in FEATURES if LINUX_FLAG[f.name] in flags]
    assert missing and "sse2" in flags, "every checkable feature is present"
    checks = {"none": [], "present": present, "missing": [present[0], missing[0]],
              "both_missing": missing[::-1], "host": list(resolve_target("host").required)}
    results = _run_checks(tmp_path, checks)
    assert results == {"none": "-", "present": "-", "missing": missing[0],
                       "both_missing": missing[-1], "host": "-"}


def test_check_compiles_for_other_architectures(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    use_compiler(monkeypatch, tmp_path / "empty", "ziglang")
    source = tmp_path / "check.c"
    source.write_text(cpu_check_c("needs", ["avx2"]) + cpu_check_c("needs_none", [])
                      + "const char *both(void) { return needs() ? needs() : needs_none(); }\n")
    subprocess.run([*find_c_compiler(), "-target", "aarch64-linux-musl", *STRICT_C, "-c",
                    str(source), "-o", str(tmp_path / "check.o")], check=True)
    assert (tmp_path / "check.o").stat().st_size > 0


def test_check_rejects_unknown_features_and_bad_symbols() -> None:
    with pytest.raises(ValueError, match="cannot check amx-tile; checkable features: sse3"):
        cpu_check_c("check", ["avx2", "amx-tile"])
    with pytest.raises(ValueError, match="not a C identifier"):
        cpu_check_c("2check", [])


@pytest.mark.parametrize("level", list(LEVELS))
def test_levels_resolve_to_llvm_cpus(level: str) -> None:
    t = resolve_target(level)
    assert (t.name, t.cpu, t.features) == (level, level, "")
    assert set(t.required) == set(LEVELS[level])
    assert t.target_machine().triple == binding.get_process_triple()


def test_levels_nest() -> None:
    v1, v2, v3, v4 = (set(resolve_target(n).required) for n in LEVELS)
    assert v1 == set() and v1 < v2 < v3 < v4
    assert v2 == {"sse3", "ssse3", "sse4.1", "sse4.2", "crc32", "popcnt", "cx16", "sahf"}
    assert v3 - v2 == {"avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave"}
    assert v4 - v3 == {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}


def test_added_features_bring_what_they_imply() -> None:
    t = resolve_target("x86-64-v2+avx512fp16+gfni")
    assert t.cpu == "x86-64-v2"
    added = {"avx", "avx2", "f16c", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq",
             "avx512fp16", "gfni"}
    assert set(t.required) == set(LEVELS["x86-64-v2"]) | added
    assert set(t.features.split(",")) == {f"+{f}" for f in added}
    order = list(CHECKED)
    assert list(t.required) == sorted(t.required, key=order.index)
    t.target_machine()


@pytest.mark.parametrize("name, message", [
    ("x86-64-v5", "unknown export target 'x86-64-v5'; accepted: \"host\", \"x86-64\", "
                  "\"x86-64-v2\", \"x86-64-v3\", \"x86-64-v4\", or a level followed by "
                  "\"+feature\" parts"),
    ("skylake", "unknown export target 'skylake'"),
    ("host+avx2", "unknown export target 'host+avx2'"),
    ("", "unknown export target ''"),
    ("x86-64-v3+amx-tile", "cannot add 'amx-tile'; a \"+feature\" part must be a feature "
                           "the library can check at run time: sse3, ssse3"),
    ("x86-64-v3+", "cannot add ''"),
])
def test_bad_names_say_what_is_accepted(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_target(name)


def test_only_host_on_other_architectures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binding, "get_process_triple", lambda: "aarch64-unknown-linux-gnu")
    with pytest.raises(ValueError, match="not x86-64, so the only accepted target is \"host\""):
        resolve_target("x86-64-v3")
    t = resolve_target("host")
    assert (t.triple, t.required) == ("aarch64-unknown-linux-gnu", ())


def test_host_switches_off_unchecked_features() -> None:
    host = dict(binding.get_host_cpu_features())
    t = resolve_target("host")
    assert (t.name, t.cpu) == ("host", binding.get_host_cpu_name())
    parts = t.features.split(",")
    signs = {p[1:]: p[0] for p in parts}
    assert len(signs) == len(parts) == len(host)
    for name, on in host.items():
        usable = on and (name in CHECKED or name in BASELINE)
        assert signs[name] == ("+" if usable else "-"), name
    assert set(t.required) == {n for n, on in host.items() if on and n in CHECKED}
    # LLVM reads the string in order: every switch-off comes after every switch-on.
    order = [p[0] for p in parts]
    assert order == ["+"] * order.count("+") + ["-"] * order.count("-")


def _assembly(target: Target, ir: str) -> str:
    ref = binding.parse_assembly(ir)
    tm = target.target_machine()
    ref.triple = tm.triple
    return tm.emit_assembly(ref)


POPCOUNT_IR = """
declare i64 @llvm.ctpop.i64(i64)
define i64 @count(i64 %x) {
  %n = call i64 @llvm.ctpop.i64(i64 %x)
  ret i64 %n
}
"""


def test_target_features_reach_code_generation() -> None:
    def uses_popcnt(target: Target) -> bool:
        return "popcnt" in _assembly(target, POPCOUNT_IR)

    triple = binding.get_process_triple()
    assert not uses_popcnt(resolve_target("x86-64"))
    assert uses_popcnt(resolve_target("x86-64-v2"))
    assert uses_popcnt(Target("t", triple, "x86-64", "+popcnt", ("popcnt",)))
    # A later switch-off wins, as "host" relies on.
    assert not uses_popcnt(Target("t", triple, "x86-64-v2", "+popcnt,-popcnt", ()))
    assert targets.resolve_target("host").target_machine(pic=False).triple == triple
