"""Code-generation targets of exported libraries: the build machine's CPU or a portable level.

A target fixes the CPU and instruction-set features LLVM may use, and the features the
library must find at run time before it runs any of that code (`cpu_check_c`). Only
features the check covers are ever switched on, so a library refuses to start on a CPU
that lacks one instead of stopping at an illegal instruction.
"""

from __future__ import annotations

import dataclasses
from functools import cache

from llvmlite import binding

from pullback.compiler.export.cpu_features import BASELINE, CHECKED, cpu_check_c, with_implied

__all__ = ["LEVELS", "Target", "cpu_check_c", "resolve_target"]

_V2 = ("sse3", "ssse3", "sse4.1", "sse4.2", "crc32", "popcnt", "cx16", "sahf")
_V3 = _V2 + ("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave")
_V4 = _V3 + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")

LEVELS: dict[str, tuple[str, ...]] = {
    "x86-64": (), "x86-64-v2": _V2, "x86-64-v3": _V3, "x86-64-v4": _V4}
"""The portable x86-64 levels (LLVM CPU names) and the features each one uses."""


@dataclasses.dataclass(frozen=True)
class Target:
    """What an exported library is compiled for.

    `name` is the target as the user wrote it (the manifest records it); `cpu` and
    `features` are LLVM's CPU name and feature string; `required` lists the features
    the code may use that the library checks for when a context is created.
    """

    name: str
    triple: str
    cpu: str
    features: str
    required: tuple[str, ...]

    def target_machine(self, *, pic: bool = True) -> binding.TargetMachine:
        """An O3 LLVM target machine emitting object code for this target."""
        _llvm_ready()
        return binding.Target.from_triple(self.triple).create_target_machine(
            cpu=self.cpu, features=self.features, opt=3,
            reloc="pic" if pic else "default", codemodel="default")

    def cpu_check_c(self, symbol: str) -> str:
        """C source of `static const char *<symbol>(void)` checking `required`."""
        return cpu_check_c(symbol, self.required)


@cache
def _llvm_ready() -> bool:
    binding.initialize_native_target()
    binding.initialize_native_asmprinter()
    return True


def _is_x86_64(triple: str) -> bool:
    return triple.split("-", 1)[0] in ("x86_64", "amd64")


def _accepted(x86_64: bool) -> str:
    if not x86_64:
        return '"host" (portable levels exist only for x86-64 hosts)'
    return ('"host", ' + ", ".join(f'"{level}"' for level in LEVELS)
            + ', or a level followed by "+feature" parts (for instance "x86-64-v3+avx512f")')


def resolve_target(name: str) -> Target:
    """The target named `name`: "host", an x86-64 level, or a level plus "+feature" parts.

    "host" compiles for the build machine's CPU with every feature the run-time check
    covers and every other non-baseline feature switched off. A level ("x86-64",
    "x86-64-v2", "x86-64-v3", "x86-64-v4") runs on any CPU of that level; each
    "+feature" adds one checkable feature (LLVM's name) and the features it implies.

    Raises:
        ValueError: for any other name, naming what is accepted.
    """
    _llvm_ready()
    triple = binding.get_process_triple()
    x86_64 = _is_x86_64(triple)
    if name == "host":
        return _host_target(triple, x86_64)
    level, *added = name.split("+")
    if not x86_64:
        raise ValueError(f"unknown export target {name!r}: this machine ({triple}) is not "
                         f"x86-64, so the only accepted target is {_accepted(False)}")
    if level not in LEVELS:
        raise ValueError(f"unknown export target {name!r}; accepted: {_accepted(True)}")
    bad = [f for f in added if f not in CHECKED]
    if bad:
        raise ValueError(
            f"export target {name!r}: cannot add {', '.join(repr(f) for f in bad)}; a "
            f"\"+feature\" part must be a feature the library can check at run time: "
            f"{', '.join(CHECKED)}")
    required = with_implied((*LEVELS[level], *added))
    features = ",".join(f"+{f}" for f in required if f not in LEVELS[level])
    return Target(name, triple, level, features, required)


def _host_target(triple: str, x86_64: bool) -> Target:
    """The build machine's CPU, limited on x86-64 to features the run-time check covers."""
    cpu = binding.get_host_cpu_name()
    try:
        host = dict(binding.get_host_cpu_features())
    except RuntimeError:
        host = {}
    if not x86_64:
        features = ",".join(f"{'+' if on else '-'}{f}" for f, on in sorted(host.items()))
        return Target("host", triple, cpu, features, ())
    if not host:
        raise ValueError('export target "host": LLVM cannot read this CPU\'s features; '
                         f"name a portable level instead: {_accepted(True)}")
    enabled = [f for f, on in host.items() if on and (f in CHECKED or f in BASELINE)]
    required = with_implied(f for f in enabled if f in CHECKED)
    # Switch-offs come last: LLVM applies the string in order, and switching a feature
    # off also switches off every feature that implies it.
    on = sorted(set(enabled) | set(required))
    off = sorted(f for f in host if f not in on)
    features = ",".join([f"+{f}" for f in on] + [f"-{f}" for f in off])
    return Target("host", triple, cpu, features, required)
