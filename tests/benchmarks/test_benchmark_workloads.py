"""The benchmark workloads: hand-written numpy gradients against central finite
differences, the GMM objective against a loop transliteration of its definition, the
JAX and pullback gradients against numpy's, numpy's Adam against its closed form, and
the JAX and pullback training steps against numpy's, all on small float64 instances."""

import copy
import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
from scipy.special import log_softmax, multigammaln

import pullback as pb
from benchmarks import run, training
from benchmarks.compare import leaves, relative_error
from benchmarks.engines import jax_available, run_jax, run_pullback
from benchmarks.workloads import WORKLOADS, gmm, lstm, mlp, train

NAMES = sorted(WORKLOADS)


def _arrays(tree):
    """The parameter arrays of a pytree, in place (for perturbing)."""
    if isinstance(tree, dict):
        return [a for key in sorted(tree) for a in _arrays(tree[key])]
    if isinstance(tree, tuple | list):
        return [a for item in tree for a in _arrays(item)]
    return [tree]


def central_differences(fun, params, step=1e-6):
    """d fun / d params by central differences, one leaf per parameter array."""
    params = copy.deepcopy(params)
    grads = []
    for array in _arrays(params):
        grad = np.zeros(array.shape)
        for index in np.ndindex(array.shape):
            saved = array[index]
            h = step * max(1.0, abs(saved))
            array[index] = saved + h
            up = fun(*params)
            array[index] = saved - h
            down = fun(*params)
            array[index] = saved
            grad[index] = (up - down) / (2 * h)
        grads.append(grad)
    return grads


@pytest.mark.parametrize("name", NAMES)
def test_numpy_gradient_matches_finite_differences(name):
    workload = WORKLOADS[name]
    problem = workload.small_problem()
    data = problem.data

    def value(*params):
        return workload.numpy_objective(*params, *data)

    expected = central_differences(value, problem.params)
    actual = leaves(workload.numpy_gradient(*problem.params, *data))
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)


def _gmm_by_loops(alpha, means, icf, x, gamma=1.0, m=0):
    """The GMM objective written point by point, as its definition reads."""
    n, d = x.shape
    k = alpha.size
    total = -0.5 * n * d * math.log(2 * math.pi)
    factors = []
    for j in range(k):
        factor = np.diag(np.exp(icf[j, :d]))
        entries = iter(icf[j, d:])
        for col, row in itertools.combinations(range(d), 2):
            factor[row, col] = next(entries)
        factors.append(factor)
    for i in range(n):
        terms = [
            alpha[j] + icf[j, :d].sum() - 0.5 * np.sum((factors[j] @ (x[i] - means[j])) ** 2)
            for j in range(k)
        ]
        total += np.log(np.sum(np.exp(terms)))
    total -= n * np.log(np.sum(np.exp(alpha)))
    for j in range(k):
        q, l = icf[j, :d], icf[j, d:]
        total += 0.5 * gamma**2 * (np.sum(np.exp(q) ** 2) + np.sum(l**2)) - m * q.sum()
    dof = d + m + 1
    return total - k * (dof * d * math.log(gamma / math.sqrt(2)) - multigammaln(dof / 2, d))


@pytest.mark.parametrize(("gamma", "m"), [(1.0, 0), (1.7, 2)])
def test_gmm_objective_matches_definition(gamma, m):
    problem = gmm.setup(d=3, k=4, n=10)
    args = (*problem.params, *problem.data)
    expected = _gmm_by_loops(*args, gamma=gamma, m=m)
    assert gmm.numpy_objective(*args, gamma=gamma, m=m) == pytest.approx(expected, rel=1e-12)


def test_gmm_gradient_with_wishart_parameters():
    problem = gmm.setup(d=4, k=3, n=7)

    def value(*params):
        return gmm.numpy_objective(*params, *problem.data, gamma=1.7, m=2)

    expected = central_differences(value, problem.params)
    actual = gmm.numpy_gradient(*problem.params, *problem.data, gamma=1.7, m=2)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)


def _lstm_by_loops(main, extra, state, seq):
    """The LSTM objective written number by number, as its definition reads."""
    c, b = seq.shape
    layers = main.shape[0] // 2

    def sigmoid(v):
        return 1.0 / (1.0 + math.exp(-v))

    h = [[state[2 * j, k] for k in range(b)] for j in range(layers)]
    s = [[state[2 * j + 1, k] for k in range(b)] for j in range(layers)]
    total = 0.0
    for t in range(c - 1):
        z = [seq[t, k] * extra[0, k] for k in range(b)]
        for j in range(layers):
            w, bias = main[2 * j], main[2 * j + 1]
            for k in range(b):
                forget = sigmoid(z[k] * w[k] + bias[k])
                ingate = sigmoid(h[j][k] * w[b + k] + bias[b + k])
                outgate = sigmoid(z[k] * w[2 * b + k] + bias[2 * b + k])
                change = math.tanh(h[j][k] * w[3 * b + k] + bias[3 * b + k])
                s[j][k] = forget * s[j][k] + ingate * change
                h[j][k] = outgate * math.tanh(s[j][k])
            z = list(h[j])
        y = [z[k] * extra[1, k] + extra[2, k] for k in range(b)]
        normaliser = math.log(2.0 + sum(math.exp(v) for v in y))
        total += sum(seq[t + 1, k] * (y[k] - normaliser) for k in range(b))
    return -total / ((c - 1) * b)


def test_lstm_objective_matches_definition():
    problem = lstm.setup(layers=2, bits=7, chars=6)
    args = (*problem.params, *problem.data)
    assert lstm.numpy_objective(*args) == pytest.approx(_lstm_by_loops(*args), rel=1e-12)


def test_lstm_text_is_binary_code_points():
    (state, seq) = lstm.setup(layers=2, bits=14, chars=30).data
    assert seq.shape == (30, 14) and set(np.unique(seq)) <= {0.0, 1.0}
    code_points = seq @ (2 ** np.arange(14))
    assert np.all((code_points >= 32) & (code_points < 127)) and state.shape == (4, 14)


def test_mlp_objective_is_softmax_cross_entropy():
    problem = mlp.setup(**mlp.WORKLOAD.small)
    params, x, labels = problem.params[0], *problem.data
    h = x
    for name in mlp.LAYERS:
        h = h @ params["w" + name] + params["b" + name]
        h = h if name == mlp.LAYERS[-1] else np.tanh(h)
    expected = -np.mean(log_softmax(h, axis=1)[labels.astype(bool)])
    assert mlp.numpy_objective(params, x, labels) == pytest.approx(expected, rel=1e-12)


def test_full_size_problems_have_the_stated_shapes():
    (x,) = WORKLOADS["chain"].setup().params
    assert x.shape == (1_000_000,) and x.dtype == np.float64
    problem = WORKLOADS["mlp"].setup()
    shapes = {key: value.shape for key, value in problem.params[0].items()}
    assert shapes == {
        "w1": (784, 256),
        "b1": (256,),
        "w2": (256, 256),
        "b2": (256,),
        "w3": (256, 10),
        "b3": (10,),
    }
    assert all(a.dtype == np.float32 for a in _arrays((problem.params, problem.data)))
    alpha, means, icf = WORKLOADS["gmm"].setup().params
    assert (alpha.shape, means.shape, icf.shape) == ((25,), (25, 10), (25, 55))
    main, extra = WORKLOADS["lstm"].setup().params
    state, seq = WORKLOADS["lstm"].setup().data
    assert (main.shape, extra.shape, state.shape) == ((4, 56), (3, 14), (4, 14))
    assert seq.shape[1] == 14


@pytest.mark.parametrize("name", NAMES)
def test_dsl_objective_runs_on_numpy_inputs(name):
    workload = WORKLOADS[name]
    problem = workload.small_problem()
    args = (*problem.params, *problem.data)
    value = workload.objective(*args)
    assert float(value) == pytest.approx(workload.numpy_objective(*args), rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_jax_gradient_matches_numpy(name):
    workload = WORKLOADS[name]
    problem = workload.small_problem()
    if not jax_available():
        (row,) = run.benchmark(workload, run.parse_args(["--small", "--repeat", "1"]))
        assert "jax" not in row.results
        return
    result = run_jax(workload, problem, repeat=1)
    expected = workload.numpy_gradient(*problem.params, *problem.data)
    assert relative_error(result.output, expected) < 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_pullback_gradient_matches_numpy(name, device):
    workload = WORKLOADS[name]
    problem = workload.small_problem()
    result = run_pullback(workload, problem, repeat=1, device=device)
    expected = workload.numpy_gradient(*problem.params, *problem.data)
    assert relative_error(result.output, expected) < 1e-10
    assert result.first_call > 0 and result.steady.median > 0


def test_runner_prints_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "results.json"
    rows = run.main(["--small", "--repeat", "2", "--only", "gmm", "--json", str(path)])
    out = capsys.readouterr().out
    assert "| gmm" in out and "numpy/pb" in out
    assert [row.name for row in rows] == ["gmm"]
    saved = json.loads(path.read_text())
    assert saved["rows"][0]["workload"] == "gmm"
    assert len(saved["rows"][0]["systems"]["numpy"]["runs_s"]) == 2
    assert "pb cold" in out and "pb warm" in out  # first calls in fresh processes
    assert saved["rows"][0]["systems"]["pullback"]["cold_first_s"] > 0


def test_numpy_adam_follows_its_closed_form():
    b1, b2, lr, eps = 0.9, 0.999, 0.1, 1e-8
    p0 = np.array([[1.0, -2.0], [0.5, 3.0]])
    g1, g2 = np.array([[0.3, -4.0], [2e-3, 1.0]]), np.array([[-0.1, 2.0], [1e-3, 1.0]])
    params = {"p": p0.copy()}
    adam = training.NumpyAdam(pb.optimisers.Adam(lr, betas=(b1, b2), eps=eps), params)
    adam.step({"p": g1})
    # the bias-corrected moments of the first step are g and g²: a step of lr·g/(|g| + eps)
    p1 = p0 - lr * g1 / (np.abs(g1) + eps)
    np.testing.assert_allclose(params["p"], p1, rtol=1e-14)
    adam.step({"p": g2})
    m = ((1 - b1) * b1 * g1 + (1 - b1) * g2) / (1 - b1**2)
    v = ((1 - b2) * b2 * g1**2 + (1 - b2) * g2**2) / (1 - b2**2)
    np.testing.assert_allclose(params["p"], p1 - lr * m / (np.sqrt(v) + eps), rtol=1e-14)
    assert adam.t == 2


def test_numpy_training_step_is_one_adam_step_on_the_mlp_gradient(monkeypatch):
    monkeypatch.setattr(training, "CHECK_STEPS", 1)
    problem = train.WORKLOAD.small_problem()
    (grads,) = mlp.numpy_gradient(*problem.params, *problem.data)
    (params,) = training.run_numpy(train.WORKLOAD, problem, repeat=3).output
    lr, eps = train.ADAM.lr, train.ADAM.eps
    for key, start in problem.params[0].items():
        g = grads[key]
        np.testing.assert_allclose(params[key], start - lr * g / (np.abs(g) + eps), rtol=1e-14)


@pytest.mark.parametrize("variant", training.VARIANTS)
def test_pullback_training_matches_numpy(variant, device):
    problem = train.WORKLOAD.small_problem()
    start = copy.deepcopy(problem.params)
    expected = training.run_numpy(train.WORKLOAD, problem, repeat=1).output
    # more timed steps than numpy's: the checked parameters come from their own fresh copy
    result = training.run_pullback(train.WORKLOAD, problem, repeat=3, device=device,
                                   variant=variant)
    assert relative_error(result.output, expected) < 1e-10
    moved = [np.abs(a - b).max() for a, b in zip(leaves(result.output), leaves(start), strict=True)]
    assert max(moved) > train.ADAM.lr  # several steps of about lr each
    assert relative_error(problem.params, start) == 0.0  # the problem's own arrays are untouched
    assert result.first_call > 0 and result.steady.median > 0


def test_jax_training_matches_numpy():
    problem = train.WORKLOAD.small_problem()
    if not jax_available():
        (row, _) = run.benchmark(train.WORKLOAD, run.parse_args(["--small", "--repeat", "1"]))
        assert "jax" not in row.results
        return
    expected = training.run_numpy(train.WORKLOAD, problem, repeat=1).output
    result = training.run_jax(train.WORKLOAD, problem, repeat=2)
    assert relative_error(result.output, expected) < 1e-10


def test_runner_times_both_training_forms():
    rows = run.main(["--small", "--repeat", "2", "--only", "train", "--no-jax"])
    assert [row.name for row in rows] == ["train", "train [eager]"]
    for row in rows:
        assert row.check_text() == "ok" and set(row.checks) == {"pullback"}
        assert all(result.error is None for result in row.results.values())


def test_gradient_workloads_have_one_pullback_form():
    problem = mlp.WORKLOAD.small_problem()
    with pytest.raises(ValueError, match="unknown gradient variant 'eager'"):
        run_pullback(mlp.WORKLOAD, problem, repeat=1, device="cpu", variant="eager")


def test_training_needs_adam():
    workload = dataclasses.replace(train.WORKLOAD, optimiser=pb.optimisers.Descent(0.1))
    with pytest.raises(ValueError, match=r"needs optimiser pb.optimisers.Adam\(...\), got Descent"):
        training.run_numpy(workload, workload.small_problem(), repeat=1)
