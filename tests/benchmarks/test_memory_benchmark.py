"""The memory benchmark: its model's gradient (and eager update) against a numpy backward
pass, the expected byte counts against their arithmetic, the memory plans of the four
configurations, the report's tables, and a tiny end-to-end run in subprocesses."""

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
    assert sizes.expected_activations("eager") == 3 * 4 * 5 * 8 * 4
    assert sizes.expected_activations("checkpointed") == (3 + 4) * 5 * 8 * 4
    assert sizes.expected_activations("both") == (3 + 4) * 5 * 8 * 4
    assert sizes.expected_residuals("eager") == 3 * 4 * 5 * 8 * 4
    assert sizes.expected_residuals("checkpointed") == 3 * 5 * 8 * 4
    assert sizes.block_parameter_bytes == 4 * (8 * 8 + 8) * 4
    assert sizes.expected_temporaries("plain") == 3 * 4 * 5 * 8 * 4
    assert sizes.layer_parameter_bytes == (8 * 8 + 8) * 4
    assert sizes.expected_temporaries("both") == (3 + 4) * 5 * 8 * 4 + (8 * 8 + 8) * 4
    assert sizes.parameter_bytes == 3 * 4 * (8 * 8 + 8) * 4
    assert sizes.expected_parameter_gradients("checkpointed") == sizes.parameter_bytes
    assert sizes.expected_parameter_gradients("both") == 0
    for method in (sizes.expected_activations, sizes.expected_residuals,
                   sizes.expected_temporaries, sizes.expected_parameter_gradients):
        with pytest.raises(ValueError, match="unknown configuration 'lazy'; accepted: plain"):
            method("lazy")


def test_model_shapes_and_dtypes():
    model, x = memory.make_model(TINY)
    assert len(model) == TINY.blocks and all(len(b) == TINY.layers for b in model)
    leaves = [a for layers in model for layer in layers for a in layer.values()]
    assert all(a.dtype == np.float32 for a in leaves) and x.dtype == np.float32
    assert sum(a.nbytes for a in leaves) == TINY.parameter_bytes
    assert x.shape == (TINY.batch, TINY.width)


def biased_model():
    model, x = memory.make_model(TINY, seed=3)
    for layers in model:  # nonzero biases, so their gradient path is exercised
        for layer in layers:
            layer["b"] += np.float32(0.1)
    return model, x


@pytest.mark.parametrize("config", ["plain", "checkpointed"])
def test_gradient_matches_numpy(config):
    model, x = biased_model()
    loss = memory.make_loss(config, model)
    grad_model, grad_x = pb.compile(loss, model, x, mode="gradient")(model, x)
    expected_model, expected_x = numpy_gradient(model, x)
    for got_block, want_block in zip(grad_model, expected_model, strict=True):
        for got, want in zip(got_block, want_block, strict=True):
            np.testing.assert_allclose(got["W"], want["W"], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(got["b"], want["b"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grad_x, expected_x, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("config", memory.EAGER)
def test_eager_update_takes_a_descent_step(config):
    """One call returns no parameter gradients, the input's gradient from the old
    weights, and leaves every weight and bias one descent step further: old - lr * grad."""
    lr = 0.5
    model, x = biased_model()
    old = [[{k: v.copy() for k, v in layer.items()} for layer in layers] for layers in model]
    expected_model, expected_x = numpy_gradient(model, x)
    loss = memory.make_loss(config, model, lr=lr)
    grad_model, grad_x = pb.compile(loss, model, x, mode="gradient")(model, x)
    assert all(g is None for layers in grad_model for layer in layers for g in layer.values())
    np.testing.assert_allclose(grad_x, expected_x, rtol=1e-4, atol=1e-6)
    for new_block, old_block, want_block in zip(model, old, expected_model, strict=True):
        for new, before, want in zip(new_block, old_block, want_block, strict=True):
            for k in ("W", "b"):
                np.testing.assert_allclose(new[k], before[k] - lr * want[k], rtol=0, atol=1e-6)


def returned(plan):
    """Bytes a call returns: the outputs, and the gradients where the report separates them."""
    fields = plan if isinstance(plan, dict) else {
        name: getattr(plan, name) for name in ("outputs", "gradients") if hasattr(plan, name)}
    return fields["outputs"] + fields.get("gradients", 0)


def test_plans_of_the_four_configurations():
    sizes = Sizes(blocks=4, layers=2, width=8, batch=4)
    model, x = memory.make_model(sizes)
    plans = {c: pb.compile(memory.make_loss(c, model), model, x, mode="gradient").memory
             for c in memory.CONFIGS}
    assert plans["checkpointed"].temporaries < plans["plain"].temporaries
    assert plans["checkpointed"].peak_bytes < plans["plain"].peak_bytes
    assert plans["eager"].peak_bytes < plans["plain"].peak_bytes
    assert plans["both"].peak_bytes < plans["checkpointed"].peak_bytes
    value = 4  # the float32 loss
    for c in memory.CONFIGS:
        assert returned(plans[c]) == (value + sizes.activation_bytes
                                      + sizes.expected_parameter_gradients(c))
    assert returned(plans["plain"]) - returned(plans["eager"]) == sizes.parameter_bytes
    assert returned(plans["checkpointed"]) - returned(plans["both"]) == sizes.parameter_bytes


@pytest.mark.parametrize("config", ["checkpointed", "eager"])
def test_measure_config_reports_plan_and_process_memory(config):
    result = memory.measure_config(config, TINY, steps=2, device="cpu")
    plan = result["plan"]
    assert plan["inputs"] >= TINY.parameter_bytes + TINY.activation_bytes
    assert returned(plan) == (4 + TINY.activation_bytes
                              + TINY.expected_parameter_gradients(config))
    assert plan["peak_bytes"] == plan["inputs"] + returned(plan) + plan["temporaries"]
    assert len(result["seconds"]) == 2 and 0 < result["best_s"] <= result["median_s"]
    assert result["rss_compile_peak"] >= result["rss_after_compile"]
    assert result["rss_steps_peak"] >= result["rss_after_steps"]
    assert result["host_calls"] >= 0


def fake_result(config, peak, outputs, temporaries, growth, seconds, **parts):
    return {"config": config, "host_calls": 0, "compile_s": 1.0, "median_s": 2 * seconds,
            "best_s": seconds,
            "rss_compile_peak": 0, "rss_after_compile": 0, "rss_steps_peak": growth,
            "plan": {"peak_bytes": peak, "inputs": peak - outputs - temporaries,
                     "outputs": outputs, "temporaries": temporaries, "unplanned_bytes": 0,
                     **parts}}


MIB = 2**20
# one activation is 1 MiB; plain stores 8 activations, checkpointed 4 + 2
REPORT_SIZES = Sizes(blocks=4, layers=2, width=512, batch=512)


def test_report_compares_plans_and_memory_with_the_expectations():
    assert REPORT_SIZES.activation_bytes == MIB
    assert REPORT_SIZES.parameter_bytes == 8 * 513 * 512 * 4
    p = REPORT_SIZES.parameter_bytes
    layer = REPORT_SIZES.layer_parameter_bytes  # 513 x 512 x 4 B: 1.0 MiB
    results = [fake_result("plain", 20 * MIB + p, p, 8 * MIB, p + 8 * MIB, 1.0),
               fake_result("checkpointed", 20 * MIB + p, p, 6 * MIB, p + 6 * MIB, 2.0),
               fake_result("eager", 20 * MIB + layer, 0, 8 * MIB + layer, 8 * MIB + layer, 2.0),
               {"config": "both", "error": "RuntimeError: out of memory"}]
    text = memory.render(results, REPORT_SIZES)
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in text.splitlines() if line.startswith("| ")}
    assert lines["temporaries, plain"] == ["8.0 MiB", "8.0 MiB", "1.00", "—", "—"]
    assert lines["temporaries, checkpointed / plain"] == ["0.75", "0.75", "1.00", "—", "—"]
    # eager holds one layer's parameter gradients (1.0 MiB) too
    assert lines["temporaries, eager"] == ["9.0 MiB", "9.0 MiB", "1.00", "—", "—"]
    assert "residuals, plain" not in lines
    # all but one layer's gradients: 8.0 - 1.0 MiB
    assert lines["parameter gradients off the peak, plain - eager"] == [
        "7.0 MiB", "7.0 MiB", "1.00", "7.0 MiB", "1.00"]
    assert lines["parameter gradients off the peak, checkpointed - both"][1:] == [
        "—", "—", "—", "—"]
    assert lines["best call time, checkpointed / plain"] == ["1.33", "—", "—", "2.00", "1.50"]
    both = [line for line in text.splitlines() if line.startswith("| both ")]
    assert len(both) == 2  # the plan and process tables: every cell empty
    assert all({c.strip() for c in line.split("|")[2:-1]} == {"—"} for line in both)
    assert text.splitlines()[-1] == "both: RuntimeError: out of memory"


def test_report_uses_the_residuals_when_the_plan_gives_them():
    p = REPORT_SIZES.parameter_bytes
    results = [fake_result("plain", 20 * MIB + p, p, 9 * MIB, 0, 1.0,
                           residuals=8 * MIB, gradients=MIB, scratch=0),
               fake_result("eager", 20 * MIB, 0, 10 * MIB, 0, 1.0,
                           residuals=8 * MIB, gradients=2 * MIB, scratch=0)]
    text = memory.render(results, REPORT_SIZES)
    header = [c.strip() for c in text.splitlines()[0].split("|")[1:-1]]
    assert header[2:8] == ["inputs", "outputs", "gradients", "temporaries", "residuals",
                           "scratch"]
    assert "| residuals, eager | 8.0 MiB | 8.0 MiB | 1.00 |" in " ".join(text.split())
    assert "| residuals, checkpointed / plain | 0.50 | — |" in " ".join(text.split())


def test_command_line_runs_each_configuration_in_a_subprocess(capsys):
    results = memory.main(["--small", "--blocks", "2", "--layers", "2", "--width", "8",
                           "--batch", "4", "--steps", "1"])
    assert [r["config"] for r in results] == list(memory.CONFIGS)
    assert all("error" not in r for r in results)
    assert all(r["baseline"] > 0 and r["rss_steps_peak"] > 0 for r in results)
    assert results[2]["plan"]["peak_bytes"] < results[0]["plan"]["peak_bytes"]
    assert results[3]["plan"]["peak_bytes"] < results[1]["plan"]["peak_bytes"]
    out = capsys.readouterr().out
    for row in ("| plain ", "| checkpointed ", "| eager ", "| both ",
                "| parameter gradients off the peak, plain - eager ",
                "| best call time, both / eager "):
        assert row in out


def test_only_selects_configurations():
    args = memory.parse_args(["--only", "both", "--only", "plain"])
    assert args.configs == ["plain", "both"]
    assert memory.parse_args([]).configs == list(memory.CONFIGS)


def test_bad_input_is_rejected():
    with pytest.raises(SystemExit):
        memory.parse_args(["--width", "0"])
    with pytest.raises(SystemExit):
        memory.parse_args(["--steps", "0"])
    with pytest.raises(SystemExit):
        memory.parse_args(["--only", "lazy"])
    with pytest.raises(ValueError, match="unknown configuration"):
        memory.measure_config("lazy", TINY, steps=1, device="cpu")
    with pytest.raises(ValueError, match="unknown configuration"):
        memory.make_loss("lazy", memory.make_model(TINY)[0])
