"""`pullback demo`: the loss goes down and the gradient check passes."""

import re

from pullback.cli import main


def test_demo_trains_and_checks_its_gradient(capsys):
    assert main(["demo", "--steps", "120"]) == 0
    out = capsys.readouterr().out
    losses = [float(v) for v in re.findall(r"loss (\d+\.\d+)", out)]
    assert losses[-1] < 0.8 * losses[0]
    err = float(re.search(r"max relative error (\S+)", out).group(1))
    assert err < 1e-5
    assert "time per step" in out and "compiled loss+gradient" in out
