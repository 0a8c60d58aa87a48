"""Each mode is one pipeline text: replaying `c.pipeline` on the traced module gives
every stage text byte for byte; `PULLBACK_PRINT_IR` prints the stages asked for."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from xdsl.parser import Parser

import pullback as pb
from pullback.compiler.context import make_context
from pullback.compiler.passes import parse_pipeline

PULLBACK = str(Path(sys.executable).parent / "pullback") if (
    Path(sys.executable).parent / "pullback").exists() else shutil.which("pullback") or "pullback"
"""The installed `pullback` command."""
O = pb.optimisers
RNG = np.random.default_rng(11)
W = RNG.normal(size=(4, 3)) / 2
X4 = RNG.normal(size=4)


def mlp(x):
    return pb.sum(pb.tanh(W.T @ x + 0.5) ** 2)


def two_args(a, b):
    return pb.sum(pb.exp(a) * b) + pb.sum(a * a)


def regions(x):
    h = pb.checkpointed(lambda u: pb.tanh(W.T @ u), x)
    y = pb.forwarddiff(lambda v: pb.sin(v) * v, h)
    return pb.sum(y * y)


def _step():
    model = {"w": RNG.normal(size=(4, 3)) / 2, "b": np.zeros(3)}
    x, y = RNG.normal(size=(5, 4)), RNG.normal(size=(5, 3))
    state = O.setup(O.Adam(0.01), model)

    def loss(m, x, y):
        return pb.mean((pb.tanh(x @ m["w"] + m["b"]) - y) ** 2)

    def step(m, x, y):
        value, (g, _, _) = pb.withgradient(loss, m, x, y)
        O.update(state, m, g)
        return value

    return step, (model, x, y)


def _cases():
    modes = ("value", "gradient", "withgradient", "pullback", "jacobian", "hessian",
             "hessian_reverse", "diaghessian")
    for mode in modes:
        yield f"mlp-{mode}", lambda mode=mode: pb.compile(mlp, X4, mode=mode)
    for mode in ("gradient", "pullback", "jacobian", "diaghessian"):
        yield f"two_args-{mode}", lambda mode=mode: pb.compile(two_args, X4, X4[::-1].copy(),
                                                              mode=mode)
    for mode in ("value", "gradient", "jacobian"):
        yield f"regions-{mode}", lambda mode=mode: pb.compile(regions, X4, mode=mode)
    yield "training-step", lambda: pb.compile(*(lambda s, a: (s, *a))(*_step()))
    w = pb.array(W.copy())
    yield "params-jacobian", lambda: pb.compile(lambda: pb.tanh(w.T @ X4), pb.Params([w]),
                                                mode="jacobian")


CASES = dict(_cases())


def _replayed(c: pb.Compiled) -> list[tuple[str, str]]:
    """(stage key, text) after each pass of `c.pipeline` applied to the traced text."""
    ctx = make_context()
    module = Parser(ctx, c.ir("trace")).parse_module()
    out = []
    for key, p in zip(list(c.stages)[1:], parse_pipeline(c.pipeline).passes, strict=True):
        assert key.partition("#")[0] == p.name
        p.apply(ctx, module)
        out.append((key, str(module)))
    return out


@pytest.mark.parametrize("case", CASES)
def test_replaying_the_pipeline_gives_every_stage(case):
    c = CASES[case]()
    stages = c.stages
    assert list(stages)[0] == "trace" and len(stages) == len(parse_pipeline(c.pipeline).passes) + 1
    for key, text in _replayed(c):
        assert text == stages[key], f"{case}: stage {key} differs"


@pytest.mark.parametrize("case", ["mlp-hessian", "two_args-gradient", "params-jacobian"])
def test_a_program_loaded_from_disk_has_the_same_pipeline_and_stages(case, disk_cache_dir):
    pb.clear_caches()
    compiled = CASES[case]()
    stages, text = dict(compiled.stages), compiled.pipeline
    pb.clear_caches()
    hits = pb.cache_info().disk_hits
    loaded = CASES[case]()
    assert pb.cache_info().disk_hits == hits + 1
    assert loaded.pipeline == text and dict(loaded.stages) == stages


def test_pipeline_names_every_option():
    # The traced @f takes (x, W): W, closed over, is an input too. The Hessian with
    # respect to x: @f_vjp(x, W) -> (y, dx); its jvp takes tangents (tx, tW) and returns
    # (y, dx, ty, tdx); tW is bound to zero, the vmap batches tx over x.size directions,
    # and only tdx (result 3) is kept.
    c = pb.compile(mlp, X4, mode="hessian")
    assert c.pipeline.split(",inline-checkpoints")[0] == (
        'autodiff{func="f" wrt=0 seed=true},jvp{func="f_vjp"},'
        'bind-zeros{func="f_vjp_jvp" args=3},vmap{func="f_vjp_jvp" args=2 size=4},'
        'keep-results{func="f_vjp_jvp_vmap" results=3},keep-functions{names="f_vjp_jvp_vmap"},'
        'drop-derivative-terms,simplify,cse,dce')
    # keep-functions already left only the entry: the lowering starts at the kernel passes
    assert c.pipeline.endswith(
        'drop-derivative-terms,simplify,cse,dce,inline-checkpoints,drop-eager-updates,'
        'drop-identities,schedule-writes,fuse,bufferize,convert-kernels-to-loops,memory-plan,'
        'expand-math,host-call-status,convert-parallel-to-for,convert-loops-to-llvm')


def test_the_pullback_opt_command_replays_the_pipeline(tmp_path):
    c = CASES["regions-gradient"]()
    traced = tmp_path / "traced.mlir"
    traced.write_text(c.ir("trace"))
    last = list(c.stages)[-1]
    done = subprocess.run([PULLBACK, "opt", str(traced), "-p",
                           c.pipeline], capture_output=True, text=True, check=True)
    assert done.stdout.rstrip("\n") == c.ir(last).rstrip("\n")
    array_level = c.pipeline.split(",inline-checkpoints")[0]
    done = subprocess.run([PULLBACK, "opt", str(traced), "-p",
                           array_level], capture_output=True, text=True, check=True)
    assert done.stdout.rstrip("\n") == c.ir().rstrip("\n") == c.ir("dce").rstrip("\n")


def test_each_device_ends_its_pipeline_with_its_own_lowering(device):
    c = pb.compile(regions, X4, mode="jacobian", device=device)
    cpu_only = ",expand-math,host-call-status,convert-parallel-to-for,convert-loops-to-llvm"
    kernel_level = ('inline-checkpoints,drop-eager-updates,drop-identities,schedule-writes,'
                    'fuse,bufferize,convert-kernels-to-loops,memory-plan')
    assert c.pipeline.endswith(kernel_level + (cpu_only if device == "cpu" else ""))
    for key, text in _replayed(c):
        assert text == c.stages[key]


def test_a_repeated_pass_gets_a_numbered_stage():
    c = pb.compile(mlp, X4, mode="hessian_reverse")
    assert c.pipeline.count("autodiff{") == 2
    assert [k for k in c.stages if k.startswith("autodiff")] == ["autodiff", "autodiff#2"]
    x = X4
    t = np.tanh(W.T @ x + 0.5)
    # d/dx sum(t^2) = W (2 t (1 - t^2)); its Jacobian: W diag(2 (1 - t^2)(1 - 3 t^2)) W^T
    want = W @ np.diag(2 * (1 - t ** 2) * (1 - 3 * t ** 2)) @ W.T
    np.testing.assert_allclose(c(x), want, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------
# PULLBACK_PRINT_IR
# ----------------------------------------------------------------------------


def _printed(monkeypatch, capsys, value: str) -> str:
    monkeypatch.setenv("PULLBACK_PRINT_IR", value)
    pb.clear_caches()
    pb.compile(mlp, X4, mode="gradient")
    return capsys.readouterr().err


def test_print_ir_after_and_before_named_passes(monkeypatch, capsys):
    err = _printed(monkeypatch, capsys, "after=cse,before=memory-plan")
    headers = [line for line in err.splitlines() if line.startswith("// -----//")]
    assert headers == ["// -----// IR Dump After cse //----- //",
                       "// -----// IR Dump Before memory-plan //----- //"]
    monkeypatch.delenv("PULLBACK_PRINT_IR")
    pb.clear_caches()
    c = pb.compile(mlp, X4, mode="gradient")
    after_cse, before_plan = err.split("// -----// IR Dump Before memory-plan //----- //\n")
    assert after_cse.split("//----- //\n", 1)[1].strip() == c.ir("cse").strip()
    assert before_plan.strip() == c.ir("convert-kernels-to-loops").strip()


def test_print_ir_after_all_prints_every_stage_in_order(monkeypatch, capsys):
    err = _printed(monkeypatch, capsys, "after-all")
    monkeypatch.delenv("PULLBACK_PRINT_IR")
    pb.clear_caches()
    keys = list(pb.compile(mlp, X4, mode="gradient").stages)
    at = [err.index(f"// -----// IR Dump After {k} //----- //\n") for k in keys]
    assert at == sorted(at) and err.count("IR Dump After") == len(keys)
    assert "// -----// LLVM IR //----- //" in err


@pytest.mark.parametrize("value", ["all", "after=no-such-pass", "before", "after-all,dce"])
def test_print_ir_refuses_what_it_cannot_read(monkeypatch, value):
    monkeypatch.setenv("PULLBACK_PRINT_IR", value)
    pb.clear_caches()
    with pytest.raises(ValueError, match="accepted: 'after-all', 'before=PASS' and 'after=PASS'"):
        pb.compile(mlp, X4, mode="gradient")
