"""The results table: one row per workload, every system timed in the same run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.engines import EngineResult

DASH = "—"
HEADER = (
    "workload",
    "pullback",
    "pb first",
    "pb cold",
    "pb warm",
    "numpy",
    "jax",
    "jax first",
    "numpy/pb",
    "pb/jax",
    "check",
)


@dataclass
class Row:
    """One workload's results; `checks` maps a system to its error against numpy."""

    name: str
    summary: str
    sizes: dict[str, Any]
    results: dict[str, EngineResult]
    checks: dict[str, float] = field(default_factory=dict)
    rtol: float = 0.0

    def steady(self, system: str) -> float | None:
        result = self.results.get(system)
        return result.steady.median if result and result.steady else None

    def first_call(self, system: str, kind: str = "first_call") -> float | None:
        """A first call of `system`: "first_call" (in this process), "cold_first" or
        "warm_first" (fresh processes, empty or warm disk cache)."""
        result = self.results.get(system)
        return getattr(result, kind) if result else None

    def check_text(self) -> str:
        """'ok' when every compared gradient matches numpy's within rtol, else the worst one."""
        if not self.checks:
            return DASH
        bad = {name: err for name, err in self.checks.items() if not err <= self.rtol}
        if not bad:
            return "ok"
        return ", ".join(f"{name} {err:.1e}" for name, err in bad.items())


def _ms(seconds: float | None) -> str:
    return DASH if seconds is None else f"{seconds * 1e3:.3g} ms"


def _s(seconds: float | None) -> str:
    return DASH if seconds is None else f"{seconds:.3g} s"


def _ratio(top: float | None, bottom: float | None) -> str:
    return DASH if top is None or bottom is None else f"{top / bottom:.2f}x"


def cells(row: Row) -> tuple[str, ...]:
    pb, numpy, jax = row.steady("pullback"), row.steady("numpy"), row.steady("jax")
    return (
        row.name,
        _ms(pb),
        _s(row.first_call("pullback")),
        _s(row.first_call("pullback", "cold_first")),
        _s(row.first_call("pullback", "warm_first")),
        _ms(numpy),
        _ms(jax),
        _s(row.first_call("jax")),
        _ratio(numpy, pb),
        _ratio(pb, jax),
        row.check_text(),
    )


def render(rows: list[Row]) -> str:
    """A markdown table of the rows, followed by any errors a system raised."""
    body = [HEADER] + [cells(row) for row in rows]
    widths = [max(len(line[i]) for line in body) for i in range(len(HEADER))]

    def line(values: tuple[str, ...]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    text = [line(body[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    text += [line(values) for values in body[1:]]
    for row in rows:
        for system, result in row.results.items():
            if result.error:
                text.append(f"{row.name} / {system}: {result.error}")
    return "\n".join(text)
