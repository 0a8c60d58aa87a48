"""VJP and JVP rules of every `ad` op: `stop_gradient` has none (zero derivative)."""

from __future__ import annotations

from pullback.compiler.autodiff.rules.table import RuleTable
from pullback.compiler.dialects import ad

RULES = RuleTable()
VJP_RULES = RULES.vjp
JVP_RULES = RULES.jvp

RULES.defzero(ad.StopGradientOp)
