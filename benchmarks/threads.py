"""Do two threads calling one compiled function really run in parallel?

Run `python benchmarks/threads.py` (`--help` for the options). One compiled gradient
(`sum(tanh(m x) x)` with `m = mean(x**2)`, over `--size` float64: elementwise ops and
reductions, so no multi-threaded BLAS takes the second core, and temporaries in the
scratch arena) is called `2 * --calls` times: first all on one thread, then
split over two threads calling it at once. The native call releases the GIL and each
concurrent call has its own scratch arena, so on two free cores the two-thread run
takes about half the time. Every result is checked against numpy. The best of
`--repeat` rounds is reported (the machine may be shared).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pullback as pb  # noqa: E402


def _loss(x):
    return pb.sum(pb.tanh(x * pb.mean(x ** 2)) * x)


def _gradient(x: np.ndarray) -> np.ndarray:
    m = np.mean(x ** 2)
    t = np.tanh(m * x)
    return t + m * x * (1 - t ** 2) + 2 * x / x.size * np.sum(x ** 2 * (1 - t ** 2))


def _calls(f: pb.Compiled, xs: list[np.ndarray], out: list[np.ndarray]) -> None:
    for x in xs:
        out.append(f(x)[0])


def _timed(f: pb.Compiled,
           groups: list[list[np.ndarray]]) -> tuple[float, float, list[np.ndarray]]:
    """Run each group of inputs on its own thread, all at once: the wall-clock seconds,
    the CPU seconds of the process meanwhile, and the results."""
    results: list[list[np.ndarray]] = [[] for _ in groups]
    threads = [threading.Thread(target=_calls, args=(f, g, r))
               for g, r in zip(groups, results, strict=True)]
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (time.perf_counter() - start, time.process_time() - cpu,
            [g for r in results for g in r])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="elements of x")
    parser.add_argument("--calls", type=int, default=20, help="calls per thread")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best is kept")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(args.size) for _ in range(2 * args.calls)]
    f = pb.compile(_loss, xs[0], mode="gradient", device=args.device)
    f(xs[0])
    one, two = [], []
    for _ in range(args.repeat):
        *timing, got = _timed(f, [xs])
        one.append(tuple(timing))
        *timing, got2 = _timed(f, [xs[0::2], xs[1::2]])
        two.append(tuple(timing))
    expected = {id(x): _gradient(x) for x in xs}
    ok = all(np.allclose(g, expected[id(x)], rtol=1e-12, atol=0)
             for x, g in zip(xs, got, strict=True))
    ok = ok and all(np.allclose(g, expected[id(x)], rtol=1e-12, atol=0)
                    for x, g in zip(xs[0::2] + xs[1::2], got2, strict=True))
    n = 2 * args.calls
    (wall1, cpu1), (wall2, cpu2) = min(one), min(two)
    print(f"{n} calls of a {args.size}-element gradient on {args.device}: "
          f"{1e3 * wall1 / n:.2f} ms per call on one thread")
    print(f"one thread:  {wall1:.3f} s wall, {cpu1:.3f} s CPU ({cpu1 / wall1:.2f} cores busy)")
    print(f"two threads: {wall2:.3f} s wall, {cpu2:.3f} s CPU ({cpu2 / wall2:.2f} cores busy)")
    print(f"speedup:     {wall1 / wall2:.2f}x   results {'ok' if ok else 'WRONG'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
