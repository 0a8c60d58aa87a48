"""The soak benchmark in a quick form: compile/clear rounds and repeated calls must not
grow resident memory (each phase in a fresh process, so other tests' memory does
not blur the reading)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks import soak

ROOT = Path(__file__).resolve().parents[2]

_PHASE = """
import json, sys
sys.path.insert(0, {root!r})
from benchmarks import soak
phase = {call}
print(json.dumps({{"growth_mb": phase.growth_mb, "start_mb": phase.start_mb}}))
"""


def _phase(call: str) -> dict:
    code = _PHASE.format(root=str(ROOT), call=call)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PULLBACK_DEVICE": "cpu"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_compile_clear_rounds_free_their_native_code() -> None:
    """40 rounds of compile + clear: each round's LLVM pass pipeline used to stay
    allocated (about 250 KB a round, 10 MB here); now well under 2.5 MB."""
    result = _phase("soak.compile_clear(40, 10, 'cpu', collect=True)")
    assert result["growth_mb"] < 2.5, result


def test_repeated_calls_do_not_grow_memory() -> None:
    result = _phase("soak.calls(20_000, 2_000, 'cpu')")
    assert result["growth_mb"] < 1.0, result


def test_soak_loss_gradient_matches_numpy() -> None:
    """The soak's program computes what it should (it is also the programs' check)."""
    import pullback as pb

    rng = np.random.default_rng(0)
    w, x = rng.normal(size=(8, 4)), rng.normal(size=(16, 8))
    (gw, gx) = pb.gradient(soak.loss, w, x)
    h = np.tanh(x @ w)
    dh = -2 * h * np.exp(-h * h) + 2 * h / (1 + h * h)
    dz = dh * (1 - h * h)
    np.testing.assert_allclose(gw, x.T @ dz, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(gx, dz @ w.T, rtol=1e-12, atol=1e-13)
