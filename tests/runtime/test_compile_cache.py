"""The compile cache is bounded (least recently used out first), configurable by
`pb.set_cache_limit` and `PULLBACK_CACHE_ENTRIES`, compiles a key once when threads
ask for it at the same time, and frees evicted code once nothing holds it."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import weakref

import numpy as np
import pytest
from opencl_platform import NO_OPENCL

import pullback as pb
from pullback import compile_cache, pipeline
from pullback.compile_cache import CompileCache
from pullback.program import trace_program


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test starts from an empty cache and leaves the limit as it found it."""
    pb.clear_caches()
    previous = pb.set_cache_limit(compile_cache.DEFAULT_ENTRIES)
    yield
    pb.set_cache_limit(previous)
    pb.clear_caches()


def f(v):
    return pb.sum(pb.sin(v) * v)


def df(v):
    return np.cos(v) * v + np.sin(v)


def grad_of_size(n: int) -> np.ndarray:
    x = np.linspace(0.1, 1.0, n)
    (g,) = pb.gradient(f, x)
    np.testing.assert_allclose(g, df(x), rtol=1e-13)
    return g


def test_default_limit_is_documented_value() -> None:
    assert pb.cache_info().limit == compile_cache.DEFAULT_ENTRIES == 64


def test_cache_holds_at_most_the_limit_and_evicts_least_recently_used() -> None:
    assert pb.set_cache_limit(3) == compile_cache.DEFAULT_ENTRIES
    for n in (1, 2, 3):
        grad_of_size(n)
    grad_of_size(1)                         # 1 is now the most recently used
    before = pb.cache_info()
    grad_of_size(4)                         # evicts 2, the least recently used
    info = pb.cache_info()
    assert (info.entries, info.limit) == (3, 3)
    assert info.evictions == before.evictions + 1
    grad_of_size(1)
    grad_of_size(3)
    assert pb.cache_info().compiles == info.compiles   # 1 and 3 were kept
    grad_of_size(2)
    assert pb.cache_info().compiles == info.compiles + 1   # 2 was not


def test_lowering_the_limit_evicts_at_once() -> None:
    for n in range(1, 6):
        grad_of_size(n)
    assert pb.cache_info().entries == 5
    pb.set_cache_limit(2)
    info = pb.cache_info()
    assert info.entries == 2 and info.evictions >= 3


def test_limit_zero_keeps_nothing_and_still_computes() -> None:
    pb.set_cache_limit(0)
    before = pb.cache_info().compiles
    grad_of_size(3)
    grad_of_size(3)
    info = pb.cache_info()
    assert info.entries == 0 and info.compiles == before + 2


@pytest.mark.parametrize("bad", [-1, 2.5, "8", True, None])
def test_bad_limit_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"whole number >= 0.*0 keeps none"):
        pb.set_cache_limit(bad)  # type: ignore[arg-type]


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_environment_variable_sets_the_limit() -> None:
    done = _python("import pullback as pb; print(pb.cache_info().limit)",
                   PULLBACK_CACHE_ENTRIES=" 7 ")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "7"


def test_bad_environment_variable_says_what_is_accepted() -> None:
    done = _python("import pullback", PULLBACK_CACHE_ENTRIES="lots")
    assert done.returncode != 0
    assert "PULLBACK_CACHE_ENTRIES must be a whole number >= 0" in done.stderr
    assert "'lots'" in done.stderr


def test_threads_asking_for_one_program_compile_it_once() -> None:
    """Eight threads ask for the same (not yet compiled) program at once."""
    x = np.linspace(-1.0, 1.0, 33)
    program = trace_program(lambda v: pb.exp(pb.tanh(v) * 2.0), (x,))
    start = threading.Barrier(8)
    built: list[pipeline.Built] = []

    def ask() -> None:
        start.wait()
        built.append(pipeline.compiled(program, "value", "cpu"))

    before = pb.cache_info()
    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = pb.cache_info()
    assert after.compiles == before.compiles + 1
    assert after.hits == before.hits + 7
    assert len(built) == 8 and all(b is built[0] for b in built)
    (out,) = built[0].run([x])
    np.testing.assert_allclose(out, np.exp(np.tanh(x) * 2.0), rtol=1e-14)


def test_different_keys_compile_in_parallel() -> None:
    """A build of one key waits for a build of another key to start: with one lock
    around building, this would never finish."""
    cache: CompileCache[str] = CompileCache(4)
    b_started = threading.Event()
    results: dict[str, str] = {}

    def build_a() -> str:
        assert b_started.wait(timeout=30), "the build of b did not run while a was building"
        return "A"

    def build_b() -> str:
        b_started.set()
        return "B"

    ta = threading.Thread(target=lambda: results.update(a=cache.get("a", build_a)))
    tb = threading.Thread(target=lambda: results.update(b=cache.get("b", build_b)))
    ta.start()
    tb.start()
    ta.join(timeout=60)
    tb.join(timeout=60)
    assert results == {"a": "A", "b": "B"}
    assert cache.info().compiles == 2


def test_a_failed_build_reaches_every_waiter_and_is_not_kept() -> None:
    cache: CompileCache[int] = CompileCache(4)
    release = threading.Event()
    errors: list[BaseException] = []
    calls = []

    def failing() -> int:
        calls.append(1)
        release.wait(timeout=30)
        raise ValueError("no such program")

    def ask() -> None:
        try:
            cache.get("k", failing)
        except ValueError as e:
            errors.append(e)

    first = threading.Thread(target=ask)
    first.start()
    while not calls:
        threading.Event().wait(0.01)
    second = threading.Thread(target=ask)
    second.start()
    threading.Event().wait(0.2)
    release.set()
    first.join(timeout=60)
    second.join(timeout=60)
    assert len(errors) == 2 and len(calls) == 1
    assert cache.get("k", lambda: 5) == 5    # nothing was kept: it builds again


def test_evicted_and_cleared_code_is_freed_once_nothing_holds_it() -> None:
    pb.set_cache_limit(1)
    x = np.linspace(0.1, 1.0, 5)
    grad_of_size(5)
    (built,) = pipeline._CACHE._entries.values()
    executable = weakref.ref(built.executable)
    engine = weakref.ref(built.executable._engine)
    del built
    grad_of_size(6)                          # evicts the first program
    gc.collect()
    assert executable() is None and engine() is None

    kept = pb.compile(f, x)                  # a user's object holds its code
    grad_of_size(7)                          # evicts it from the cache
    pb.clear_caches()
    gc.collect()
    np.testing.assert_allclose(kept(x)[0], df(x), rtol=1e-13)
    held = weakref.ref(kept._built.executable)
    del kept
    gc.collect()
    assert held() is None


@NO_OPENCL
def test_evicted_opencl_program_and_buffers_are_freed() -> None:
    """The executable and its OpenCL program (kept by `program._MEMORY` only weakly)
    are gone once evicted."""
    pb.set_cache_limit(1)
    with pb.device("opencl"):
        grad_of_size(5)
        (built,) = pipeline._CACHE._entries.values()
        executable = weakref.ref(built.executable)
        cl_program = weakref.ref(built.executable._program)
        del built
        grad_of_size(6)                      # evicts the first program
    gc.collect()
    assert executable() is None and cl_program() is None
