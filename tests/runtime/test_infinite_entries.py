"""`logsumexp` and `softmax` with -inf, +inf and NaN entries: values against scipy and
the mathematical limits, first and second derivatives against softmax formulas, compiled
on every device and eagerly with numpy.

Conventions checked (documented on the functions): `-inf` entries get weight 0; a slice
that is all `-inf` gives `logsumexp = -inf` and softmax weights 0; a slice holding
`+inf` gives `logsumexp = +inf` and splits the softmax weight among its `+inf` entries.
Where the value does not change under any finite change of the inputs (an infinite
logsumexp, an all `-inf` or `+inf` softmax slice) every derivative is 0.
"""

import numpy as np
import pytest
import scipy.special as sp

import pullback as pb
from pullback.compiler.context import make_context
from pullback.compiler.interpreter import evaluate_module
from pullback.compiler.passes import get_pass
from pullback.program import trace_program

INF = np.inf


def _rows(seed: int, n: int = 12, width: int = 5) -> np.ndarray:
    """Random rows: finite, some `-inf`, some `+inf`, all `-inf`, both infinities."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width))
    for i in range(n):
        kind = i % 6
        if kind == 1:
            x[i, rng.choice(width, 2, replace=False)] = -INF
        elif kind == 2:
            x[i] = -INF
        elif kind == 3:
            x[i, rng.integers(width)] = INF
        elif kind == 4:
            x[i, rng.choice(width, 2, replace=False)] = [INF, -INF]
        elif kind == 5:
            x[i, rng.choice(width, 3, replace=False)] = [INF, INF, -INF]
    return x


X = _rows(0)


def _scipy_logsumexp(x: np.ndarray) -> np.ndarray:
    """scipy's logsumexp over rows (it computes inf - inf internally on +inf rows and
    warns, but returns the right values)."""
    with np.errstate(invalid="ignore"):
        return sp.logsumexp(x, axis=1)


def _finite_rows(x: np.ndarray) -> np.ndarray:
    return np.isfinite(_scipy_logsumexp(x))


def _lse_gradient_reference(x: np.ndarray) -> np.ndarray:
    """softmax on rows with a finite logsumexp, 0 on the others."""
    out = np.zeros_like(x)
    finite = _finite_rows(x)
    out[finite] = sp.softmax(x[finite], axis=1)
    return out


def _softmax_reference(x: np.ndarray) -> np.ndarray:
    """The limit of softmax: +inf entries share the weight; an all -inf row has none."""
    big = np.where(x == INF, np.finfo(np.float64).max, x)
    out = np.zeros_like(x)
    some = ~np.all(x == -INF, axis=1)
    out[some] = sp.softmax(big[some], axis=1)
    return out


def _softmax_jacobian_blocks(x: np.ndarray) -> np.ndarray:
    """d softmax / dx as (rows, width, width) blocks: diag(p) - p p^T on rows with a
    finite logsumexp, 0 elsewhere."""
    blocks = np.zeros((x.shape[0], x.shape[1], x.shape[1]))
    for i in np.flatnonzero(_finite_rows(x)):
        p = sp.softmax(x[i])
        blocks[i] = np.diag(p) - np.outer(p, p)
    return blocks


def _block_diagonal(blocks: np.ndarray) -> np.ndarray:
    r, w, _ = blocks.shape
    out = np.zeros((r * w, r * w))
    for i in range(r):
        out[i * w:(i + 1) * w, i * w:(i + 1) * w] = blocks[i]
    return out


def test_logsumexp_eager_matches_scipy():
    np.testing.assert_allclose(pb.logsumexp(X, axis=1), _scipy_logsumexp(X), rtol=1e-14)
    np.testing.assert_allclose(pb.logsumexp(X.T, axis=0), _scipy_logsumexp(X), rtol=1e-14)
    assert pb.logsumexp(np.array([-INF, -INF])) == -INF
    assert pb.logsumexp(np.array([INF, 0.0])) == INF


def test_softmax_eager_matches_the_limits():
    np.testing.assert_allclose(pb.softmax(X, axis=1), _softmax_reference(X), rtol=1e-14)
    np.testing.assert_array_equal(pb.softmax(np.array([INF, 0.0, INF])), [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(pb.softmax(np.array([-INF, -INF])), [0.0, 0.0])
    finite = np.random.default_rng(1).normal(size=(3, 4))
    np.testing.assert_allclose(pb.softmax(finite), sp.softmax(finite), rtol=1e-14)


def test_logsumexp_compiled_value_and_gradient(device):
    value = pb.compile(lambda x: pb.logsumexp(x, axis=1), X, mode="value", device=device)
    np.testing.assert_allclose(value(X), _scipy_logsumexp(X), rtol=1e-13)
    (g,) = pb.gradient(lambda x: pb.sum(pb.logsumexp(x, axis=1)), X, device=device)
    np.testing.assert_allclose(g, _lse_gradient_reference(X), rtol=1e-13, atol=1e-15)


def test_logsumexp_keepdims_and_all_axes(device):
    row = X[1]
    f = pb.compile(lambda x: pb.logsumexp(x, keepdims=True), row, mode="value", device=device)
    np.testing.assert_allclose(f(row), [sp.logsumexp(row)], rtol=1e-13)
    assert f(X[2]) == -INF and f(X[3]) == INF


def test_softmax_compiled_value_and_jacobian(device):
    f = pb.compile(lambda x: pb.softmax(x, axis=1), X, mode="value", device=device)
    np.testing.assert_allclose(f(X), _softmax_reference(X), rtol=1e-13, atol=1e-15)
    (j,) = pb.jacobian(lambda x: pb.softmax(x, axis=1), X, device=device)
    np.testing.assert_allclose(j, _block_diagonal(_softmax_jacobian_blocks(X)),
                               rtol=1e-12, atol=1e-15)


def test_softmax_pullback_of_a_masked_attention_row(device):
    """A fully masked row has no weight and passes no gradient, a partly masked row
    passes none to its masked entries."""
    scores = np.array([[0.5, -INF, 1.5], [-INF, -INF, -INF]])
    y, back = pb.pullback(lambda s: pb.softmax(s, axis=1), scores, device=device)
    np.testing.assert_allclose(y, _softmax_reference(scores), rtol=1e-14)
    dy = np.array([[1.0, 2.0, -1.0], [3.0, 4.0, 5.0]])
    (ds,) = back(dy)
    p = y[0]
    np.testing.assert_allclose(ds[0], p * (dy[0] - np.dot(p, dy[0])), rtol=1e-13)
    np.testing.assert_array_equal(ds[1], 0.0)


@pytest.mark.parametrize("which", ["hessian", "hessian_reverse"])
def test_logsumexp_hessian(which, device):
    x = X[:6].ravel()
    blocks = _softmax_jacobian_blocks(X[:6])
    h = getattr(pb, which)(lambda v: pb.sum(pb.logsumexp(pb.reshape(v, (6, 5)), axis=1)),
                           x, device=device)
    np.testing.assert_allclose(h, _block_diagonal(blocks), rtol=1e-12, atol=1e-15)


def test_logsumexp_forward_mode_inside_forwarddiff(device):
    """Forward mode: the tangent of logsumexp is softmax . dx (0 on infinite rows)."""
    rows = X[:6]
    (g,) = pb.gradient(lambda x: pb.sum(pb.forwarddiff(lambda v: pb.logsumexp(v, axis=1), x)),
                       rows, device=device)
    np.testing.assert_allclose(g, _lse_gradient_reference(rows), rtol=1e-13, atol=1e-15)


def test_nan_propagates(device):
    x = np.array([[np.nan, 1.0], [np.nan, -INF], [np.nan, INF]])
    lse = pb.compile(lambda x: pb.logsumexp(x, axis=1), x, mode="value", device=device)
    assert np.isnan(lse(x)).all()
    sm = pb.compile(lambda x: pb.softmax(x, axis=1), x, mode="value", device=device)
    assert np.isnan(sm(x)[:, 0]).all()
    assert np.isnan(pb.logsumexp(x, axis=1)).all()


def test_float32_keeps_its_dtype(device):
    x = X.astype(np.float32)
    out = pb.compile(lambda x: pb.softmax(x, axis=1), x, mode="value", device=device)(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _softmax_reference(X), rtol=1e-6, atol=1e-7)
    assert pb.softmax(x, axis=1).dtype == np.float32
    assert pb.logsumexp(x, axis=1).dtype == np.float32


@pytest.mark.parametrize("name", ["logsumexp", "softmax"])
def test_reference_interpreter_forward_and_reverse(name):
    """The traced program, its `jvp` and its `autodiff` (vjp) run by the numpy reference
    interpreter of the array dialect."""
    rng = np.random.default_rng(2)
    t = rng.normal(size=X.shape)
    if name == "logsumexp":
        program = trace_program(lambda x: pb.logsumexp(x, axis=1), [X])
        value, ct = _scipy_logsumexp(X), rng.normal(size=X.shape[0])
        jvp_value = np.sum(_lse_gradient_reference(X) * t, axis=1)
        vjp_value = _lse_gradient_reference(X) * ct[:, None]
    else:
        program = trace_program(lambda x: pb.softmax(x, axis=1), [X])
        value, ct, blocks = _softmax_reference(X), rng.normal(size=X.shape), \
            _softmax_jacobian_blocks(X)
        jvp_value = np.einsum("rij,rj->ri", blocks, t)
        vjp_value = np.einsum("rij,ri->rj", blocks, ct)
    (got,) = evaluate_module(program.module, program.name, [X])
    np.testing.assert_allclose(got, value, rtol=1e-14, atol=1e-16)
    for pass_name, suffix, extra, want in [("jvp", "_jvp", t, jvp_value),
                                           ("autodiff", "_vjp", ct, vjp_value)]:
        module = program.module.clone()
        get_pass(pass_name)(func=program.name).apply(make_context(), module)
        out = evaluate_module(module, program.name + suffix, [X, extra])
        np.testing.assert_allclose(out[0], value, rtol=1e-14, atol=1e-16)
        np.testing.assert_allclose(out[1], want, rtol=1e-12, atol=1e-14)
