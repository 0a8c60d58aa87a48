"""Thread safety: compiled calls, `pb.gradient`, tracing and devices from several threads.

Every result is checked against numpy and the analytic derivative. The tests that
force an interleaving (a barrier inside a traced function or a hook, so two calls are
surely in flight at once) fail on code that shares a scratch arena, the active trace
or the eager-update binding between threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import pullback as pb
from pullback.compiler.backends.llvm.arenas import ArenaPool

THREADS = 4
TIMEOUT = 20.0  # seconds a barrier waits: far above any call here


def _in_threads(n: int, work: Callable[[int], Any]) -> list[Any]:
    """`work(i)` for i in range(n), each on its own thread at once; exceptions re-raised."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(work, i) for i in range(n)]
        return [f.result(timeout=120) for f in futures]


def _loss(x):
    """sum(tanh(m x) x) with m = mean(x**2): its calls keep temporaries in scratch memory."""
    return pb.sum(pb.tanh(x * pb.mean(x ** 2)) * x)


def _loss_value(x: np.ndarray) -> float:
    return float(np.sum(np.tanh(x * np.mean(x ** 2)) * x))


def _loss_gradient(x: np.ndarray) -> np.ndarray:
    m = np.mean(x ** 2)
    t = np.tanh(m * x)
    return t + m * x * (1 - t ** 2) + 2 * x / x.size * np.sum(x ** 2 * (1 - t ** 2))


def test_one_compiled_function_from_many_threads(device):
    rng = np.random.default_rng(0)
    f = pb.compile(_loss, rng.standard_normal(200_000), mode="withgradient", device=device)

    def work(i: int) -> int:
        local = np.random.default_rng(100 + i)
        wrong = 0
        for _ in range(25):
            x = local.standard_normal(200_000)
            out = f(x)
            wrong += not (np.isclose(out.val, _loss_value(x), rtol=1e-12)
                          and np.allclose(out.grad[0], _loss_gradient(x), rtol=1e-12, atol=0))
        return wrong

    assert _in_threads(THREADS, work) == [0] * THREADS


def test_calls_in_flight_at_once_use_their_own_scratch_memory():
    """Both calls wait for each other inside their backward pass (a hook), after their
    forward pass wrote its saved activations: shared scratch memory would mix them."""
    barrier = threading.Barrier(2, timeout=TIMEOUT)

    def meet(g):
        barrier.wait()
        return g

    f = pb.compile(lambda x: pb.sum(pb.hook(meet, pb.tanh(x)) * x), np.zeros(1000),
                   mode="gradient", device="cpu")
    xs = [np.random.default_rng(i).standard_normal(1000) for i in range(2)]
    grads = _in_threads(2, lambda i: f(xs[i])[0])
    for x, g in zip(xs, grads, strict=True):
        t = np.tanh(x)
        np.testing.assert_allclose(g, (1 - t ** 2) * x + t, rtol=1e-13)


def test_a_call_made_from_its_own_hook(device):
    """On the CPU the inner call gets scratch memory of its own; on OpenCL, whose calls of
    one function run one at a time, it is refused instead of waiting for itself."""
    x0, x1 = np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.25, -0.75])
    inner: list[Any] = []

    def nested(g):
        if not inner:
            inner.append(None)
            inner[0] = f(x1)[0]
        return g

    f = pb.compile(lambda x: pb.sum(pb.hook(nested, pb.tanh(x)) * x), x0, mode="gradient",
                   device=device)

    def expected(x):
        t = np.tanh(x)
        return (1 - t ** 2) * x + t

    if device == "opencl":
        with pytest.raises(RuntimeError, match="called again from a host call"):
            f(x0)
        np.testing.assert_allclose(f(x1)[0], expected(x1), rtol=1e-13)  # still usable
        return
    np.testing.assert_allclose(f(x0)[0], expected(x0), rtol=1e-13)
    np.testing.assert_allclose(inner[0], expected(x1), rtol=1e-13)


def test_gradient_from_many_threads(device):
    def work(i: int) -> int:
        local = np.random.default_rng(200 + i)
        wrong = 0
        for _ in range(10):
            x = local.standard_normal(50)
            (g,) = pb.gradient(_loss, x, device=device)
            wrong += not (isinstance(g, np.ndarray) and np.allclose(g, _loss_gradient(x)))
        return wrong

    assert _in_threads(THREADS, work) == [0] * THREADS


def test_traces_recorded_at_once_stay_apart():
    """Two threads are inside their traced functions at the same moment."""
    barrier = threading.Barrier(2, timeout=TIMEOUT)

    def f(x, a):
        y = pb.sin(x) * a
        barrier.wait()
        return pb.sum(y * x)

    xs = [np.random.default_rng(10 + i).standard_normal(5) for i in range(2)]
    results = _in_threads(2, lambda i: pb.gradient(f, xs[i], float(i + 2)))
    for i, (x, (gx, ga)) in enumerate(zip(xs, results, strict=True)):
        a = i + 2
        assert isinstance(gx, np.ndarray) and isinstance(ga, float)
        np.testing.assert_allclose(gx, a * (np.cos(x) * x + np.sin(x)), rtol=1e-13)
        assert ga == pytest.approx(float(np.sum(np.sin(x) * x)), rel=1e-13)


def test_numpy_call_while_another_thread_traces():
    inside, done = threading.Event(), threading.Event()

    def f(x):
        inside.set()
        assert done.wait(TIMEOUT)
        return pb.sum(pb.tanh(x))

    with ThreadPoolExecutor(max_workers=1) as pool:
        tracing = pool.submit(pb.gradient, f, np.array([0.5, -1.0]))
        assert inside.wait(TIMEOUT)
        try:
            x = np.array([0.25, 2.0, -3.0])
            y = pb.tanh(x)
            s = pb.sum(x * y)
        finally:
            done.set()
        (g,) = tracing.result(timeout=120)
    assert type(y) is np.ndarray and np.array_equal(y, np.tanh(x))
    assert s == np.sum(x * np.tanh(x))
    np.testing.assert_allclose(g, 1 - np.tanh([0.5, -1.0]) ** 2, rtol=1e-13)


def test_eager_update_binds_each_call_to_its_own_arrays():
    """One compiled training step called from two threads at once, each with its own
    parameters: each call's update must write that call's arrays."""
    barrier = threading.Barrier(2, timeout=TIMEOUT)

    def meet(g):
        barrier.wait()
        return g

    def descend(state, w, grad):
        w -= state * grad

    def step(w, x):
        w = pb.eager_update(0.5, w, descend)
        return pb.sum(pb.hook(meet, w * x) ** 2)

    w0 = np.zeros(3)
    f = pb.compile(step, w0, np.ones(3), mode="gradient", device="cpu")
    ws = [np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.5, 4.0])]
    xs = [np.array([0.5, 1.0, 2.0]), np.array([3.0, -1.0, 0.25])]
    before = [w.copy() for w in ws]
    _in_threads(2, lambda i: f(ws[i], xs[i]))
    for w, w_old, x in zip(ws, before, xs, strict=True):
        np.testing.assert_allclose(w, w_old - 0.5 * 2 * w_old * x ** 2, rtol=1e-15)
    np.testing.assert_array_equal(w0, np.zeros(3))


def test_a_backward_function_updates_the_arrays_of_its_own_call(device):
    """The same per-call binding, without threads: a compiled pullback's backward
    function, called after a later forward call, updates its own call's arrays."""

    def descend(state, w, grad):
        w -= state * grad

    def step(w, x):
        return pb.sum((pb.eager_update(0.5, w, descend) * x) ** 2)

    f = pb.compile(step, np.zeros(3), np.ones(3), mode="pullback", device=device)
    w1, w2, x = np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.5, 4.0]), np.array([0.5, 1.0, 2.0])
    _, back1 = f(w1, x)
    f(w2, x)
    _, gx = back1(1.0)
    np.testing.assert_allclose(w1, [1.0, 2.0, 3.0] - 0.5 * 2 * np.array([1.0, 2.0, 3.0]) * x ** 2,
                               rtol=1e-15)
    np.testing.assert_array_equal(w2, [-1.0, 0.5, 4.0])
    np.testing.assert_allclose(gx, 2 * np.array([1.0, 2.0, 3.0]) ** 2 * x, rtol=1e-15)


def test_device_context_is_per_thread(monkeypatch):
    monkeypatch.delenv("PULLBACK_DEVICE", raising=False)
    inside, done = threading.Event(), threading.Event()

    def elsewhere() -> None:
        with pb.device("opencl"):
            inside.set()
            assert done.wait(TIMEOUT)

    with ThreadPoolExecutor(max_workers=1) as pool:
        other = pool.submit(elsewhere)
        assert inside.wait(TIMEOUT)
        try:
            f = pb.compile(lambda x: pb.sum(x * x), np.array([1.0, 2.0]))
        finally:
            done.set()
        other.result(timeout=120)
    assert f.device == "cpu"
    assert f(np.array([3.0, 4.0]))[0].tolist() == [6.0, 8.0]


def test_compiling_from_many_threads(device):
    def work(i: int) -> bool:
        x = np.random.default_rng(300 + i).standard_normal(7 + i)
        f = pb.compile(lambda x: pb.sum(pb.exp(x) * (i + 1)), x, device=device)
        return np.allclose(f(x)[0], np.exp(x) * (i + 1), rtol=1e-13)

    assert all(_in_threads(THREADS, work))


def test_arena_pool_lends_one_arena_per_call_in_flight():
    pool = ArenaPool(64, [0, 32], idle_limit=2)
    first = pool.take()
    pool.give(first)
    assert pool.take() is first and pool.allocated == 1  # one caller: no allocation
    second, third = pool.take(), pool.take()
    assert len({id(first), id(second), id(third)}) == 3 and pool.allocated == 3
    assert first.pointers[1] - first.pointers[0] == 32
    for arena in (first, second, third):
        pool.give(arena)
    assert pool.idle == 2  # the third is dropped, not kept
