"""`benchmarks/threads.py`: its reference gradient is right, and a tiny run checks out."""

import numpy as np

from benchmarks import threads


def test_reference_gradient_matches_central_differences():
    x = np.random.default_rng(0).standard_normal(6)

    def loss(x):
        return np.sum(np.tanh(x * np.mean(x ** 2)) * x)

    h = 1e-6
    fd = [(loss(x + h * e) - loss(x - h * e)) / (2 * h) for e in np.eye(x.size)]
    np.testing.assert_allclose(threads._gradient(x), fd, rtol=1e-7)


def test_a_tiny_run_reports_its_speedup(capsys):
    assert threads.main(["--size", "1000", "--calls", "2", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "speedup" in out and "results ok" in out
