"""Kernel libraries: `pb.export` to a shared library called from C, from a fresh process
and through the Python loader, against pullback's in-process results."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from llvmlite import binding

import pullback as pb
from benchmarks.workloads import gmm, mlp
from pullback.compiler.export.cpu_features import CHECKED
from pullback.compiler.export.targets import resolve_target
from tests.runtime.export_harness import run_c

F64, F32 = 1e-12, 1e-6


def close(got, want, rtol):
    got, want = np.asarray(got), np.asarray(want)
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


# -- the libraries: GMM (objective, gradient, a Hessian) and an MLP training step ----------


@pytest.fixture(scope="module")
def gmm_problem():
    problem = gmm.setup(d=3, k=4, n=12)
    alpha, means, icf = problem.params
    (x,) = problem.data
    return alpha, means, icf, x


@pytest.fixture(scope="module")
def gmm_lib(tmp_path_factory, gmm_problem):
    alpha, means, icf, x = gmm_problem

    def objective(alphas, means, icf):
        return gmm.objective(alphas, means, icf, x)

    def icf_objective(icf):
        return gmm.objective(alpha, means, icf, x)

    entries = {
        "objective": pb.compile(objective, alpha, means, icf, mode="value"),
        "gradient": pb.compile(objective, alpha, means, icf, mode="withgradient"),
        "hessian": pb.compile(icf_objective, icf, mode="hessian"),
    }
    folder = tmp_path_factory.mktemp("gmm")
    return pb.export(folder, "gmm", entries), entries


def _mlp_step():
    problem = mlp.setup(batch=8, widths=(6, 5, 4, 3))
    step, arrays = mlp.adam_step(problem, 1e-2)
    return step, arrays, *problem.data


@pytest.fixture(scope="module")
def mlp_lib(tmp_path_factory):
    step, arrays, x, labels = _mlp_step()
    c = pb.compile(step, *[a.copy() for a in arrays], x, labels)
    folder = tmp_path_factory.mktemp("mlp")
    return pb.export(folder, "mlp", {"train_step": c}), (step, arrays, x, labels)


# -- C programs ------------------------------------------------------------------------------


def test_gmm_from_c_matches_in_process(gmm_lib, gmm_problem, tmp_path):
    lib, entries = gmm_lib
    alpha, means, icf, x = gmm_problem
    manifest = json.loads(lib.manifest.read_text())
    assert [i["name"] for i in manifest["entries"]["gradient"]["inputs"]] == [
        "alphas", "means", "icf", "x"]
    inputs = {("gmm", "objective"): [alpha, means, icf, x],
              ("gmm", "gradient"): [alpha, means, icf, x],
              ("gmm", "hessian"): [icf, alpha, means, x]}
    order = {e: [i["name"] for i in manifest["entries"][e]["inputs"]] for e in entries}
    named = {"alphas": alpha, "alpha": alpha, "means": means, "icf": icf, "x": x}
    inputs = {(lib_, e): [named[n] for n in order[e]] for (lib_, e) in inputs}
    got = run_c(tmp_path, [(lib.manifest, [("objective", 1), ("gradient", 1),
                                           ("hessian", 1)])], inputs)
    value = entries["objective"](alpha, means, icf)
    close(got[("gmm", "objective")]["result"], value, F64)
    val, grads = entries["gradient"](alpha, means, icf)
    g = got[("gmm", "gradient")]
    close(g["result"], val, F64)
    for name, want in zip(("grad_alphas", "grad_means", "grad_icf"), grads):
        close(g[name], want, F64)
    close(got[("gmm", "hessian")]["hessian_icf"], entries["hessian"](icf), F64)
    # and against numpy's hand-written gradient (independent of pullback)
    want = gmm.numpy_gradient(alpha, means, icf, x)
    for name, w in zip(("grad_alphas", "grad_means", "grad_icf"), want):
        close(g[name], w, 1e-9)


def test_training_step_from_c_updates_in_place(mlp_lib, tmp_path):
    lib, (step, arrays, x, labels) = mlp_lib
    manifest = json.loads(lib.manifest.read_text())
    spec = manifest["entries"]["train_step"]
    written = [i["name"] for i in spec["inputs"] if i["written"]]
    assert len(written) == len(arrays) + 3 * len(arrays)  # parameters, then Adam's m, v, t
    assert all(i["dtype"] == "float32" for i in spec["inputs"] if i["role"] != "captured"
               or i["dtype"] == "float32")
    # pullback in process: a fresh compiled step with its own Adam state, 3 steps
    step2, arrays2, x2, labels2 = _mlp_step()
    ours = [a.copy() for a in arrays2]
    c = pb.compile(step2, *ours, x2, labels2)
    losses = [c(*ours, x2, labels2) for _ in range(3)]
    # the C program: the same 3 steps from the same start (state as exported: zeros)
    with np.load(lib.captured_values) as stored:
        captured = {k: stored[k] for k in stored.files}
    start = {i["name"]: a for i, a in zip(spec["inputs"], [*arrays, x, labels])}
    values = [start[i["name"]] if i["name"] in start else captured[i["name"]]
              for i in spec["inputs"]]
    got = run_c(tmp_path, [(lib.manifest, [("train_step", 3)])], {("mlp", "train_step"):
                                                                   values})[("mlp", "train_step")]
    for i, want in zip(spec["inputs"][:len(arrays)], ours):
        close(got[i["name"]], want, F64 * 1e6)  # float32: 1e-6
    close(got["result"], losses[-1], F32)
    assert not np.allclose(ours[0], arrays[0])  # the steps did change the parameters


def test_two_libraries_link_into_one_program(gmm_lib, mlp_lib, gmm_problem, tmp_path):
    lib_a, entries = gmm_lib
    lib_b, (step, arrays, x, labels) = mlp_lib
    alpha, means, icf, xg = gmm_problem
    man_b = json.loads(lib_b.manifest.read_text())
    with np.load(lib_b.captured_values) as stored:
        captured = {k: stored[k] for k in stored.files}
    start = {i["name"]: a for i, a in zip(man_b["entries"]["train_step"]["inputs"],
                                           [*arrays, x, labels])}
    values = [start.get(i["name"], captured.get(i["name"]))
              for i in man_b["entries"]["train_step"]["inputs"]]
    got = run_c(tmp_path, [(lib_a.manifest, [("gradient", 1)]),
                           (lib_b.manifest, [("train_step", 1)])],
                {("gmm", "gradient"): [alpha, means, icf, xg], ("mlp", "train_step"): values})
    val, _ = entries["gradient"](alpha, means, icf)
    close(got[("gmm", "gradient")]["result"], val, F64)
    assert np.isfinite(got[("mlp", "train_step")]["result"])


def test_only_prefixed_symbols_and_only_libc_libm(gmm_lib):
    lib, _ = gmm_lib
    nm = subprocess.run(["nm", "-D", "--defined-only", str(lib.shared_library)],
                        capture_output=True, text=True, check=True).stdout
    symbols = [line.split()[-1] for line in nm.splitlines() if line.strip()]
    assert symbols and all(s.startswith("gmm_") for s in symbols), symbols
    assert "gmm_gradient" in symbols and "gmm_context_new" in symbols
    needed = subprocess.run(["readelf", "-d", str(lib.shared_library)], capture_output=True,
                            text=True, check=True).stdout
    libs = {line.split("[")[1].split("]")[0] for line in needed.splitlines() if "NEEDED" in line}
    # libc, libm, and glibc's dynamic loader (thread-local error strings)
    assert {x for x in libs if not x.startswith("ld-linux")} <= {"libc.so.6", "libm.so.6"}, libs


# -- the Python loader ----------------------------------------------------------------------


def test_loader_in_a_fresh_process(gmm_lib, gmm_problem):
    lib, entries = gmm_lib
    alpha, means, icf, x = gmm_problem
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(lib.directory)!r})
        import gmm
        lib = gmm.load()
        alpha = np.array({alpha.tolist()!r}); means = np.array({means.tolist()!r})
        icf = np.array({icf.tolist()!r})
        val, grads = lib.gradient(alpha, means, icf)
        print(repr(val)); print(repr([g.tolist() for g in grads]))
        print(repr(lib.hessian(icf).tolist()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    lines = done.stdout.strip().splitlines()
    val, grads = entries["gradient"](alpha, means, icf)
    close(float(lines[0]), val, F64)
    for g, want in zip(eval(lines[1]), grads):
        close(np.array(g), want, F64)
    close(np.array(eval(lines[2])), entries["hessian"](icf), F64)


def test_loader_in_a_venv_with_only_numpy(gmm_lib, gmm_problem, tmp_path):
    lib, entries = gmm_lib
    alpha, means, icf, _ = gmm_problem
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    numpy_dir = Path(np.__file__).parent
    (site / "numpy").symlink_to(numpy_dir)
    libs = numpy_dir.parent / "numpy.libs"
    if libs.exists():
        (site / "numpy.libs").symlink_to(libs)
    np.savez(tmp_path / "inputs.npz", alpha=alpha, means=means, icf=icf)
    script = textwrap.dedent(f"""
        import importlib.util, sys
        import numpy as np
        for missing in ("pullback", "llvmlite", "xdsl", "scipy"):
            assert importlib.util.find_spec(missing) is None, missing
        sys.path.insert(0, {str(lib.directory)!r})
        import gmm
        lib = gmm.load()
        with np.load({str(tmp_path / "inputs.npz")!r}) as f:
            val, grads = lib.gradient(f["alpha"], f["means"], f["icf"])
        np.savez({str(tmp_path / "out.npz")!r}, val=val, *grads)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(python), "-I", "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    val, grads = entries["gradient"](alpha, means, icf)
    with np.load(tmp_path / "out.npz") as out:
        close(out["val"], val, F64)
        for k, want in enumerate(grads):
            close(out[f"arr_{k}"], want, F64)


def test_loader_checks_inputs(gmm_lib, gmm_problem):
    lib, _ = gmm_lib
    alpha, means, icf, _ = gmm_problem
    loaded = lib.load()
    with pytest.raises(ValueError, match=r"input 'means' must be a C-contiguous float64 "
                                         r"array of shape \(4, 3\); got a float64 array of "
                                         r"shape \(3, 4\)"):
        loaded.gradient(alpha, means.T.copy(), icf)
    with pytest.raises(ValueError, match="input 'alphas' must be .*; got a complex128 array"):
        loaded.gradient(alpha.astype(np.complex128), means, icf)
    with pytest.raises(TypeError, match="missing input 'icf'"):
        loaded.gradient(alpha, means)
    with pytest.raises(TypeError, match="no input 'bogus'"):
        loaded.gradient(alpha, means, icf, bogus=1)


def test_loader_training_step_keeps_its_state(mlp_lib):
    lib, (step, arrays, x, labels) = mlp_lib
    loaded = lib.load()
    params = [a.copy() for a in arrays]
    step2, arrays2, x2, labels2 = _mlp_step()
    ours = [a.copy() for a in arrays2]
    c = pb.compile(step2, *ours, x2, labels2)
    for _ in range(3):
        got = loaded.train_step(*params, x, labels)
        want = c(*ours, x2, labels2)
        close(got, want, F32)
    for p, q in zip(params, ours):
        close(p, q, F32)


# -- every mode through the loader ------------------------------------------------------------


def test_every_mode_matches_in_process(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(4), rng.standard_normal((2, 3))
    w = rng.standard_normal((3, 4))

    def f(a, b):
        return pb.sum(pb.tanh(b @ w) * a) + pb.sum(b ** 3)

    def g(a, b):
        return pb.tanh(b @ w) * a

    def h(x):
        return pb.sum(pb.exp(x) * x[::-1])

    entries = {
        "value": pb.compile(g, a, b, mode="value"),
        "gradient": pb.compile(f, a, b, mode="gradient"),
        "withgradient": pb.compile(f, a, b, mode="withgradient"),
        "pullback": pb.compile(g, a, b, mode="pullback"),
        "jacobian": pb.compile(g, a, b, mode="jacobian"),
        "withjacobian": pb.compile(g, a, b, mode="withjacobian"),
        "hessian": pb.compile(h, a, mode="hessian"),
        "hessian_reverse": pb.compile(h, a, mode="hessian_reverse"),
        "diaghessian": pb.compile(f, a, b, mode="diaghessian"),
    }
    loaded = pb.export(tmp_path, "modes", entries).load()
    a2, b2 = rng.standard_normal(4), rng.standard_normal((2, 3))
    close(loaded.value(a2, b2), entries["value"](a2, b2), F64)
    for got, want in zip(loaded.gradient(a2, b2), entries["gradient"](a2, b2)):
        close(got, want, F64)
    val, grads = loaded.withgradient(a2, b2)
    ref = entries["withgradient"](a2, b2)
    close(val, ref.val, F64)
    for got, want in zip(grads, ref.grad):
        close(got, want, F64)
    dy = rng.standard_normal((2, 4))
    y, back = entries["pullback"](a2, b2)
    val, grads = loaded.pullback(a2, b2, dy)
    close(val, y, F64)
    for got, want in zip(grads, back(dy)):
        close(got, want, F64)
    for got, want in zip(loaded.jacobian(a2, b2), entries["jacobian"](a2, b2)):
        close(got, want, F64)
    val, jacs = loaded.withjacobian(a2, b2)
    ref = entries["withjacobian"](a2, b2)
    close(val, ref.val, F64)
    for got, want in zip(jacs, ref.grad):
        close(got, want, F64)
    close(loaded.hessian(a2), entries["hessian"](a2), F64)
    close(loaded.hessian_reverse(a2), entries["hessian_reverse"](a2), F64)
    for got, want in zip(loaded.diaghessian(a2, b2), entries["diaghessian"](a2, b2)):
        close(got, want, F64)
    # the Hessian against central differences of the analytic gradient (independent)
    def grad_h(x):  # d/dx_i sum_j exp(x_j) x_(n-1-j)
        return np.exp(x) * x[::-1] + np.exp(x[::-1])
    eps = 1e-6
    fd = np.stack([(grad_h(a2 + eps * e) - grad_h(a2 - eps * e)) / (2 * eps)
                   for e in np.eye(4)], axis=1)
    close(loaded.hessian(a2), fd, 1e-6)


# -- refusals and errors ---------------------------------------------------------------------


def _python_update(state, model, grads):
    model -= 0.1 * grads


@pytest.mark.parametrize("op, make", [
    ("pb.hook", lambda x: pb.hook(lambda g: g * 2, pb.tanh(x))),
    ("pb.showgrad", lambda x: pb.showgrad(pb.tanh(x), "t")),
    ("a Python pb.eager_update function",
     lambda x: pb.eager_update(None, x, _python_update) * 2.0),
])
def test_python_callbacks_are_refused_naming_entry_and_op(tmp_path, op, make):
    x = np.ones(3)

    def f(x):
        return pb.sum(make(x))

    with pytest.raises(ValueError, match=rf"entry 'noisy' cannot be exported: it runs Python "
                                         rf"during the call \({re.escape(op)}"):
        pb.export(tmp_path, "bad", {"ok": pb.compile(lambda x: pb.sum(x), x),
                                    "noisy": pb.compile(f, x, mode="gradient")})
    assert not list(tmp_path.iterdir())  # nothing written


def test_loader_from_many_threads(gmm_lib, gmm_problem):
    lib, entries = gmm_lib
    alpha, means, icf, _ = gmm_problem
    loaded = lib.load()
    rng = np.random.default_rng(1)
    points = [icf + 0.1 * rng.standard_normal(icf.shape) for _ in range(8)]
    want = [entries["gradient"](alpha, means, p) for p in points]
    failures = []

    def work(k):
        for _ in range(20):
            for p, w in zip(points[k::2], want[k::2]):
                val, grads = loaded.gradient(alpha, means, p)
                if abs(val - w.val) > 1e-12 * max(1, abs(w.val)) or any(
                        np.max(np.abs(g - h)) > 1e-10 for g, h in zip(grads, w.grad)):
                    failures.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_damaged_library_files_give_clear_errors(tmp_path):
    x = np.ones(2)
    lib = pb.export(tmp_path, "fragile", {"f": pb.compile(lambda x: pb.sum(x * x), x)})
    lib.manifest.write_text("{ not json")
    with pytest.raises(RuntimeError, match="cannot read the manifest"):
        lib.load()
    lib = pb.export(tmp_path, "fragile", {"f": pb.compile(lambda x: pb.sum(x * x), x)})
    lib.shared_library.write_bytes(b"\x7fELF truncated")
    with pytest.raises(RuntimeError, match="cannot open"):
        lib.load()


def test_bad_names_are_refused(tmp_path):
    c = pb.compile(lambda x: pb.sum(x * x), np.ones(2))
    with pytest.raises(ValueError, match="must be a C identifier"):
        pb.export(tmp_path, "my-lib", {"f": c})
    with pytest.raises(ValueError, match="taken by the library's own C function"):
        pb.export(tmp_path, "lib", {"context_new": c})
    with pytest.raises(TypeError, match="non-empty dict"):
        pb.export(tmp_path, "lib", {})
    with pytest.raises(ValueError, match="unknown export target 'pentium'"):
        pb.export(tmp_path, "lib", {"f": c}, target="pentium")


def _missing_feature() -> str:
    """A feature the runtime check covers that this CPU lacks (as LLVM reads the CPU)."""
    host = dict(binding.get_host_cpu_features())
    for name in CHECKED:
        if not host.get(name, False):
            return name
    pytest.fail("this CPU has every checkable feature; no target it lacks to test with")


def test_a_target_the_cpu_lacks_is_refused_cleanly(tmp_path):
    missing = _missing_feature()
    target = resolve_target(f"x86-64-v2+{missing}")
    assert missing in target.required
    c = pb.compile(lambda x: pb.sum(x * x), np.ones(3))
    lib = pb.export(tmp_path, "future", {"f": c}, target=target.name)
    manifest = json.loads(lib.manifest.read_text())
    assert manifest["target"]["name"] == f"x86-64-v2+{missing}"
    assert missing in manifest["target"]["required_features"]
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(lib.directory)!r})
        import future
        try:
            future.load()
        except future.LibraryError as e:
            print("refused:", e)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr  # no illegal instruction, no crash
    assert f"refused: this CPU lacks the instruction set feature '{missing}'" in done.stdout


def test_portable_level_runs_here(tmp_path):
    x = np.linspace(-1, 1, 7)
    c = pb.compile(lambda x: pb.sum(pb.exp(x) * x), x, mode="withgradient")
    loaded = pb.export(tmp_path, "portable", {"f": c}, target="x86-64-v2").load()
    val, (g,) = loaded.f(x)
    close(val, np.sum(np.exp(x) * x), F64)
    close(g, np.exp(x) * (x + 1), F64)


C_ERRORS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "errs.h"
int main(void) {
    double x[3] = {1, 2, 3}, y[3], g[3];
    char small[16];
    if (errs_context_new_in(small, sizeof small) != NULL) return 10;
    printf("[%s]\n", errs_context_error(NULL));
    size_t n = errs_context_arena_bytes();
    void *mem = malloc(n);
    errs_context *ctx = errs_context_new_in(mem, n);
    if (ctx == NULL) return 11;
    printf("%d [%s]\n", errs_f(ctx, NULL, y, g), errs_context_error(ctx));
    printf("%d [%s]\n", errs_f(ctx, x, x, g), errs_context_error(ctx));
    printf("%d [%s]\n", errs_f(ctx, x, y, g), errs_context_error(ctx));
    printf("%g %g %g %g\n", y[0], y[2], g[0], g[2]);
    errs_context_free(ctx);
    free(mem);
    return 0;
}
"""


def test_c_errors_and_caller_memory(tmp_path):
    from pullback.compiler.export.toolchain import build_executable

    x = np.array([1.0, 2.0, 3.0])
    cv = pb.compile(lambda x: x * 2.0, x, mode="pullback")
    lib = pb.export(tmp_path, "errs", {"f": cv})
    spec = json.loads(lib.manifest.read_text())["entries"]["f"]
    assert [i["name"] for i in spec["inputs"]] == ["x", "cotangent_result"]
    source = C_ERRORS.replace("errs_f(ctx, NULL, y, g)", "errs_f(ctx, NULL, x, y, g)") \
        .replace("errs_f(ctx, x, x, g)", "errs_f(ctx, x, x, x, g)") \
        .replace("errs_f(ctx, x, y, g)", "errs_f(ctx, x, x, y, g)")
    (tmp_path / "main.c").write_text(source)
    build_executable(tmp_path / "main", [tmp_path / "main.c"], include_dirs=[tmp_path],
                     library_dirs=[tmp_path], libraries=["errs"])
    out = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert "smaller than errs_context_arena_bytes()" in out[0]
    assert out[1] == "2 [errs_f: the array 'x' is NULL]"
    assert out[2].startswith("2 [errs_f: 'result' (written by the call) overlaps 'x'")
    assert out[3] == "0 []"
    assert out[4] == "2 6 2 6"  # y = 2x, and the pullback of the cotangent x: 2x
