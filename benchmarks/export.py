"""Exported kernel libraries against in-process calls: what leaving Python costs or gains.

Run `python benchmarks/export.py` (`--help` for the options). Each workload is
compiled in process (`pb.compile`), exported (`pb.export`, target "host"), and timed
three ways on the same inputs: the in-process compiled call, the exported library
through its Python loader (ctypes), and the exported library called from a C program
(a timing loop in C, no Python at all). Every exported result is checked against the
in-process one. Workloads: `gmm` (ADBench GMM objective and gradient, d=10 K=25
n=1000, float64) and `train` (one MLP training step 784-256-256-10, batch 256,
float32: loss gradient and Adam in place).

Both the in-process code and the exported library multiply these matrices with
pullback's own single-threaded GEMM (in process, products of m*n*k >= 2^30 would go
to the BLAS that scipy ships; the library links nothing but libc and libm). With
threadpoolctl installed, the in-process call is also timed with BLAS held to one
thread (it changes nothing where no product reaches BLAS).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pullback as pb  # noqa: E402
from benchmarks.timing import measure  # noqa: E402
from benchmarks.workloads import gmm, mlp  # noqa: E402
from pullback.compiler.export.toolchain import build_executable  # noqa: E402

C_TYPES = {"float64": "double", "float32": "float", "int64": "int64_t", "bool": "uint8_t"}


def _gmm() -> tuple[dict[str, pb.Compiled], list[np.ndarray], Callable[[], Any]]:
    problem = gmm.setup()
    alpha, means, icf = problem.params
    (x,) = problem.data

    def objective(alpha, means, icf):
        return gmm.objective(alpha, means, icf, x)

    c = pb.compile(objective, alpha, means, icf, mode="withgradient")
    return {"gradient": c}, [alpha, means, icf, x], lambda: c(alpha, means, icf)


def _train() -> tuple[dict[str, pb.Compiled], list[np.ndarray], Callable[[], Any]]:
    problem = mlp.setup()
    x, labels = problem.data
    step, arrays = mlp.adam_step(problem)
    c = pb.compile(step, *arrays, x, labels)
    return {"train_step": c}, [*arrays, x, labels], lambda: c(*arrays, x, labels)


WORKLOADS = {"gmm": _gmm, "train": _train}


def _c_timer(manifest: dict[str, Any], entry: str, repeat: int) -> str:
    """A C program: read the entry's inputs, call it once, then `repeat` timed calls;
    print the median seconds per call."""
    lib = manifest["library"]
    spec = manifest["entries"][entry]
    arrays = spec["inputs"] + spec["outputs"]
    decls, loads = [], []
    for k, a in enumerate(arrays):
        n = max(1, int(np.prod(a["shape"], dtype=np.int64)))
        c_type = C_TYPES[a["dtype"]]
        decls.append(f"    {c_type} *a{k} = malloc({n} * sizeof({c_type}));")
        if k < len(spec["inputs"]):
            loads.append(f'    load(argv[1], "{a["name"]}", a{k}, {n} * sizeof({c_type}));')
    args = ", ".join(f"a{k}" for k in range(len(arrays)))
    return f"""#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "{lib}.h"

static void load(const char *dir, const char *name, void *data, size_t bytes) {{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s.bin", dir, name);
    FILE *f = fopen(p, "rb");
    if (f == NULL || fread(data, 1, bytes, f) != bytes) {{ fprintf(stderr, "%s\\n", p); exit(2); }}
    fclose(f);
}}

static int cmp(const void *a, const void *b) {{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}}

int main(int argc, char **argv) {{
    if (argc < 2) return 1;
{chr(10).join(decls)}
{chr(10).join(loads)}
    {lib}_context *ctx = {lib}_context_new();
    if (ctx == NULL) {{ fprintf(stderr, "%s\\n", {lib}_context_error(NULL)); return 3; }}
    if ({spec["symbol"]}(ctx, {args}) != 0) {{ fprintf(stderr, "%s\\n", {lib}_context_error(ctx));
        return 4; }}
    double runs[{repeat}];
    for (int r = 0; r < {repeat}; r++) {{
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        {spec["symbol"]}(ctx, {args});
        clock_gettime(CLOCK_MONOTONIC, &t1);
        runs[r] = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    }}
    qsort(runs, {repeat}, sizeof(double), cmp);
    printf("%.9f\\n", runs[{repeat} / 2]);
    {lib}_context_free(ctx);
    return 0;
}}
"""


def _max_diff(a: Any, b: Any) -> float:
    fa = [np.asarray(v, dtype=np.float64) for v in _leaves(a)]
    fb = [np.asarray(v, dtype=np.float64) for v in _leaves(b)]
    scale = max(1.0, *(float(np.max(np.abs(v), initial=0)) for v in fb))
    return max(float(np.max(np.abs(x - y), initial=0)) for x, y in zip(fa, fb)) / scale


def _leaves(x: Any) -> list[Any]:
    if isinstance(x, tuple | list):
        return [leaf for item in x for leaf in _leaves(item)]
    return [x]


def run(name: str, repeat: int, folder: Path) -> dict[str, Any]:
    entries, inputs, in_process = WORKLOADS[name]()
    (entry,) = entries
    lib = pb.export(folder / name, name, entries)
    loaded = lib.load()
    fn = getattr(loaded, entry)
    manifest = json.loads(lib.manifest.read_text())
    spec = manifest["entries"][entry]
    user = inputs[:len([i for i in spec["inputs"] if i["role"] != "captured"])]
    # correctness first, on fresh copies (a training step writes its inputs)
    check = "ok"
    if name == "gmm":
        diff = _max_diff(fn(*user), in_process())
        check = "ok" if diff < 1e-10 else f"differs by {diff:.1e}"
    ours = measure(in_process, repeat)
    ours_1t = None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        with threadpool_limits(1):
            ours_1t = measure(in_process, repeat).median
    loader = measure(lambda: fn(*user), repeat)
    data = folder / name / "data"
    data.mkdir(exist_ok=True)
    values = dict(zip([i["name"] for i in spec["inputs"]], inputs))
    for i in spec["inputs"]:
        value = values.get(i["name"], loaded.captured(i["name"]) if i["role"] == "captured"
                           else None)
        np.asarray(value, dtype=i["dtype"]).tofile(data / f"{i['name']}.bin")
    source = folder / name / "timer.c"
    source.write_text(_c_timer(manifest, entry, repeat))
    program = folder / name / "timer"
    build_executable(program, [source], include_dirs=[lib.directory],
                     library_dirs=[lib.directory], libraries=[name])
    c_time = float(subprocess.run([str(program), str(data)], capture_output=True, text=True,
                                  check=True).stdout)
    return {"workload": name, "in_process": ours.median, "in_process_1t": ours_1t,
            "loader": loader.median,
            "c": c_time, "check": check,
            "peak_bytes": spec["memory"]["peak_bytes"],
            "context_bytes": manifest["context_bytes"]}


def render(rows: list[dict[str, Any]]) -> str:
    head = ("workload", "in-process", "in-process, 1 BLAS thread", "loader", "C",
            "C / in-process", "context", "check")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        one = "—" if r["in_process_1t"] is None else f"{r['in_process_1t'] * 1e3:.3f} ms"
        lines.append(
            f"| {r['workload']} | {r['in_process'] * 1e3:.3f} ms | {one} "
            f"| {r['loader'] * 1e3:.3f} ms "
            f"| {r['c'] * 1e3:.3f} ms | {r['c'] / r['in_process']:.2f} "
            f"| {r['context_bytes'] / 2**20:.1f} MiB | {r['check']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(WORKLOADS),
                        help="one workload (repeatable)")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per system")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pullback-export-bench-") as tmp:
        for name in args.only or sorted(WORKLOADS):
            rows.append(run(name, args.repeat, Path(tmp)))
    print(render(rows))
    print("\nmedians of", args.repeat, "calls; C: a timing loop in C calling the library")
    return 0


if __name__ == "__main__":
    sys.exit(main())
