"""The memory benchmark: its model's gradient against a numpy backward pass, the expected
byte counts against their arithmetic, and a tiny end-to-end run in subprocesses."""

import numpy as np
import pytest

import pullback as pb
from benchmarks import memory
from benchmarks.memory import Sizes

TINY = Sizes(blocks=2, layers=2, width=6, batch=3)


def numpy_gradient(model, x):
    """d mean(h_last^2) / d (every W and b, x), by hand in float64."""
    h, tape = x.astype(np.float64), []
    for layers in model:
        for layer in layers:
            w, b = layer["W"].astype(np.float64), layer["b"].astype(np.float64)
            tape.append((h, w))
            h = np.tanh(h @ w + b)
            tape[-1] += (h,)
    dh = 2 * h / h.size
    grads = []
    for h_in, w, h_out in reversed(tape):
        dz = dh * (1 - h_out**2)
        grads.append({"W": h_in.T @ dz, "b": dz.sum(axis=0)})
        dh = dz @ w.T
    grads.reverse()
    per_block = [grads[i:i + TINY.layers] for i in range(0, len(grads), TINY.layers)]
    return per_block, dh


def test_expected_bytes_follow_the_arithmetic():
    sizes = Sizes(blocks=3, layers=4, width=8, batch=5)
    assert sizes.activation_bytes == 5 * 8 * 4
    assert sizes.expected_activations("plain") == 3 * 4 * 5 * 8 * 4
    assert sizes.expected_activations("checkpointed") == (3 + 4) * 5 * 8 * 4
    assert sizes.parameter_bytes == 3 * 4 * (8 * 8 + 8) * 4
    with pytest.raises(ValueError, match="unknown configuration"):
        sizes.expected_activations("eager")


def test_model_shapes_and_dtypes():
    model, x = memory.make_model(TINY)
    assert len(model) == TINY.blocks and all(len(b) == TINY.layers for b in model)
    leaves = [a for layers in model for layer in layers for a in layer.values()]
    assert all(a.dtype == np.float32 for a in leaves) and x.dtype == np.float32
    assert sum(a.nbytes for a in leaves) == TINY.parameter_bytes
    assert x.shape == (TINY.batch, TINY.width)


@pytest.mark.parametrize("config", memory.CONFIGS)
def test_gradient_matches_numpy(config):
    model, x = memory.make_model(TINY, seed=3)
    for layers in model:  # nonzero biases, so their gradient path is exercised
        for layer in layers:
            layer["b"] += np.float32(0.1)
    grad_model, grad_x = pb.compile(memory.LOSSES[config], model, x, mode="gradient")(model, x)
    expected_model, expected_x = numpy_gradient(model, x)
    for got_block, want_block in zip(grad_model, expected_model, strict=True):
        for got, want in zip(got_block, want_block, strict=True):
            np.testing.assert_allclose(got["W"], want["W"], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(got["b"], want["b"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grad_x, expected_x, rtol=1e-4, atol=1e-6)


def test_checkpointed_plan_stores_less():
    sizes = Sizes(blocks=4, layers=2, width=8, batch=4)
    model, x = memory.make_model(sizes)
    plans = {c: pb.compile(memory.LOSSES[c], model, x, mode="gradient").memory
             for c in memory.CONFIGS}
    assert plans["checkpointed"].temporaries < plans["plain"].temporaries
    assert plans["checkpointed"].peak_bytes < plans["plain"].peak_bytes


def test_measure_config_reports_plan_and_process_memory():
    result = memory.measure_config("checkpointed", TINY, steps=2, device="cpu")
    plan = result["plan"]
    assert plan["inputs"] == TINY.parameter_bytes + TINY.activation_bytes
    assert plan["outputs"] == 4 + TINY.parameter_bytes + TINY.activation_bytes
    assert plan["peak_bytes"] == plan["inputs"] + plan["outputs"] + plan["temporaries"]
    assert len(result["seconds"]) == 2 and result["median_s"] > 0
    assert result["rss_compile_peak"] >= result["rss_after_compile"]
    assert result["rss_steps_peak"] >= result["rss_after_steps"]


def test_command_line_runs_each_configuration_in_a_subprocess(capsys):
    results = memory.main(["--small", "--blocks", "2", "--layers", "2", "--width", "8",
                           "--batch", "4", "--steps", "1"])
    assert [r["config"] for r in results] == list(memory.CONFIGS)
    assert all("error" not in r for r in results)
    assert all(r["baseline"] > 0 and r["rss_steps_peak"] > 0 for r in results)
    out = capsys.readouterr().out
    assert "| plain " in out and "| checkpointed " in out and "| checkpointed / plain" in out
    assert "eager_update is not built yet" in out


def test_bad_sizes_are_rejected():
    with pytest.raises(SystemExit):
        memory.parse_args(["--width", "0"])
    with pytest.raises(SystemExit):
        memory.parse_args(["--steps", "0"])
    with pytest.raises(ValueError, match="unknown configuration"):
        memory.measure_config("eager", TINY, steps=1, device="cpu")
