"""The x86-64 CPU features an exported library can check at run time, and the C check.

Each feature is named as LLVM names it and located by its CPUID bit. Vector features
also need the operating system to save their registers: AVX-class features need
OSXSAVE and the SSE and AVX state bits of XCR0; AVX-512 features also need its
opmask and upper-ZMM state bits. A library may only contain instructions of features
its check covers, so anything outside this table is switched off at code generation.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

BASELINE = frozenset({"64bit", "cmov", "cx8", "fxsr", "mmx", "nopl", "sse", "sse2", "x87"})
"""Features every x86-64 CPU has (the "x86-64" level): never checked, never switched off."""


@dataclasses.dataclass(frozen=True)
class Feature:
    """One checkable feature: where CPUID reports it, which OS state it needs, what it implies.

    `register` is a CPUID output word, written `leaf.subleaf.reg` (for instance
    "7.0.ebx"); `state` is "" (none), "xsave" (OSXSAVE), "avx" or "avx512";
    `implies` lists the table features LLVM switches on with this one.
    """

    name: str
    register: str
    bit: int
    state: str = ""
    implies: tuple[str, ...] = ()


def _f(name: str, register: str, bit: int, state: str = "", implies: str = "") -> Feature:
    return Feature(name, register, bit, state, tuple(implies.split()))


FEATURES: tuple[Feature, ...] = (
    # x86-64-v2
    _f("sse3", "1.0.ecx", 0),
    _f("ssse3", "1.0.ecx", 9, implies="sse3"),
    _f("sse4.1", "1.0.ecx", 19, implies="ssse3"),
    _f("sse4.2", "1.0.ecx", 20, implies="sse4.1"),
    _f("crc32", "1.0.ecx", 20),
    _f("popcnt", "1.0.ecx", 23),
    _f("cx16", "1.0.ecx", 13),
    _f("sahf", "80000001.0.ecx", 0),
    # x86-64-v3
    _f("avx", "1.0.ecx", 28, "avx", "sse4.2"),
    _f("avx2", "7.0.ebx", 5, "avx", "avx"),
    _f("bmi", "7.0.ebx", 3),
    _f("bmi2", "7.0.ebx", 8),
    _f("f16c", "1.0.ecx", 29, "avx", "avx"),
    _f("fma", "1.0.ecx", 12, "avx", "avx"),
    _f("lzcnt", "80000001.0.ecx", 5),
    _f("movbe", "1.0.ecx", 22),
    _f("xsave", "1.0.ecx", 26, "xsave"),
    # x86-64-v4
    _f("avx512f", "7.0.ebx", 16, "avx512", "avx2 fma f16c"),
    _f("avx512bw", "7.0.ebx", 30, "avx512", "avx512f"),
    _f("avx512cd", "7.0.ebx", 28, "avx512", "avx512f"),
    _f("avx512dq", "7.0.ebx", 17, "avx512", "avx512f"),
    _f("avx512vl", "7.0.ebx", 31, "avx512", "avx512f"),
    # Beyond the levels
    _f("pclmul", "1.0.ecx", 1),
    _f("aes", "1.0.ecx", 25),
    _f("sha", "7.0.ebx", 29),
    _f("adx", "7.0.ebx", 19),
    _f("rdrnd", "1.0.ecx", 30),
    _f("rdseed", "7.0.ebx", 18),
    _f("prfchw", "80000001.0.ecx", 8),
    _f("xsaveopt", "d.1.eax", 0, "xsave", "xsave"),
    _f("xsavec", "d.1.eax", 1, "xsave", "xsave"),
    _f("clflushopt", "7.0.ebx", 23),
    _f("clwb", "7.0.ebx", 24),
    _f("rdpid", "7.0.ecx", 22),
    _f("cldemote", "7.0.ecx", 25),
    _f("movdiri", "7.0.ecx", 27),
    _f("movdir64b", "7.0.ecx", 28),
    _f("serialize", "7.0.edx", 14),
    _f("gfni", "7.0.ecx", 8),
    _f("vaes", "7.0.ecx", 9, "avx", "avx aes"),
    _f("vpclmulqdq", "7.0.ecx", 10, "avx", "avx pclmul"),
    _f("avxvnni", "7.1.eax", 4, "avx", "avx2"),
    _f("avxifma", "7.1.eax", 23, "avx", "avx2"),
    _f("avx512ifma", "7.0.ebx", 21, "avx512", "avx512f"),
    _f("avx512vbmi", "7.0.ecx", 1, "avx512", "avx512bw"),
    _f("avx512vbmi2", "7.0.ecx", 6, "avx512", "avx512bw"),
    _f("avx512vnni", "7.0.ecx", 11, "avx512", "avx512f"),
    _f("avx512bitalg", "7.0.ecx", 12, "avx512", "avx512bw"),
    _f("avx512vpopcntdq", "7.0.ecx", 14, "avx512", "avx512f"),
    _f("avx512vp2intersect", "7.0.edx", 8, "avx512", "avx512f"),
    _f("avx512bf16", "7.1.eax", 5, "avx512", "avx512bw"),
    _f("avx512fp16", "7.0.edx", 23, "avx512", "avx512bw avx512vl avx512dq"),
    _f("sse4a", "80000001.0.ecx", 6, implies="sse3"),
    _f("fma4", "80000001.0.ecx", 16, "avx", "avx sse4a"),
    _f("xop", "80000001.0.ecx", 11, "avx", "fma4"),
    _f("tbm", "80000001.0.ecx", 21),
)
"""Every checkable feature, the most basic first: required features are listed in this order."""

CHECKED = {f.name: f for f in FEATURES}
"""The checkable features by LLVM name."""


def with_implied(names: Iterable[str]) -> tuple[str, ...]:
    """`names` (checkable features) and every table feature they imply, in table order."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(CHECKED[name].implies)
    return tuple(f.name for f in FEATURES if f.name in seen)


_STATE = {"xsave": "osxsave", "avx": "os_avx", "avx512": "os_avx512"}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def cpu_check_c(symbol: str, required: Sequence[str]) -> str:
    """C99 source of `static const char *<symbol>(void)`.

    The function returns NULL when the running CPU and operating system support every
    feature in `required` (names from `FEATURES`), else the name of the first missing
    one, in the order of `required`. Helpers it defines are static and prefixed with
    `symbol`, so checks for several libraries can share one translation unit. Compiled
    for anything but x86-64, it returns NULL only when `required` is empty.
    """
    if not _IDENTIFIER.fullmatch(symbol):
        raise ValueError(f"cpu_check_c: {symbol!r} is not a C identifier")
    unknown = [name for name in required if name not in CHECKED]
    if unknown:
        raise ValueError(f"cpu_check_c: cannot check {', '.join(unknown)}; checkable "
                         f"features: {', '.join(CHECKED)}")
    if not required:
        return _HEADERS + f"static const char *{symbol}(void)\n{{\n    return NULL;\n}}\n"
    tests = "\n".join(_feature_test(CHECKED[name]) for name in dict.fromkeys(required))
    return _HEADERS + _CHECK_TEMPLATE.format(s=symbol, tests=tests, first=required[0])


def _word(register: str) -> str:
    """The C variable that holds a CPUID output word: `7.0.ebx` -> `w7_0_ebx`."""
    return "w" + register.replace(".", "_")


def _feature_test(f: Feature) -> str:
    missing = f"!(({_word(f.register)} >> {f.bit}) & 1u)"
    if f.state:
        missing += f" || !{_STATE[f.state]}"
    return f"    if ({missing})\n        return \"{f.name}\";"


_HEADERS = "#include <stdint.h>\n#include <string.h>\n\n"

_CHECK_TEMPLATE = """\
#if defined(__x86_64__) || defined(_M_X64)
static void {s}_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{{
    __asm__ __volatile__("cpuid"
                         : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                         : "a"(leaf), "c"(sub));
}}

static const char *{s}(void)
{{
    uint32_t r[4], top, ext_top;
    uint32_t w1_0_ecx = 0, w7_0_ebx = 0, w7_0_ecx = 0, w7_0_edx = 0, w7_1_eax = 0;
    uint32_t wd_1_eax = 0, w80000001_0_ecx = 0, xcr0 = 0, edx_unused;
    int osxsave, os_avx, os_avx512;
    {s}_cpuid(0u, 0u, r);
    top = r[0];
    if (top >= 1u) {{
        {s}_cpuid(1u, 0u, r);
        w1_0_ecx = r[2];
    }}
    if (top >= 7u) {{
        {s}_cpuid(7u, 0u, r);
        w7_0_ebx = r[1];
        w7_0_ecx = r[2];
        w7_0_edx = r[3];
        if (r[0] >= 1u) {{
            {s}_cpuid(7u, 1u, r);
            w7_1_eax = r[0];
        }}
    }}
    if (top >= 13u) {{
        {s}_cpuid(13u, 1u, r);
        wd_1_eax = r[0];
    }}
    {s}_cpuid(0x80000000u, 0u, r);
    ext_top = r[0];
    if (ext_top >= 0x80000001u && ext_top <= 0x8fffffffu) {{
        {s}_cpuid(0x80000001u, 0u, r);
        w80000001_0_ecx = r[2];
    }}
    osxsave = (int)((w1_0_ecx >> 27) & 1u);
    if (osxsave)
        __asm__ __volatile__("xgetbv" : "=a"(xcr0), "=d"(edx_unused) : "c"(0u));
    (void)edx_unused;
    os_avx = osxsave && (xcr0 & 0x6u) == 0x6u;
    os_avx512 = os_avx && (xcr0 & 0xe0u) == 0xe0u;
    (void)w7_0_ebx; (void)w7_0_ecx; (void)w7_0_edx; (void)w7_1_eax; (void)wd_1_eax;
    (void)w80000001_0_ecx; (void)os_avx512;
{tests}
    return NULL;
}}
#else
static const char *{s}(void)
{{
    return "{first}";
}}
#endif
"""
"""The check for x86-64: CPUID words, then the OS state in XCR0 (read only when the OS
has set OSXSAVE, as XGETBV faults otherwise), then one test per required feature.
Elsewhere a non-empty requirement cannot be met."""
