"""OpenCL kernel libraries: `pb.export` of entries compiled for OpenCL, run from C and
through the Python loader on PoCL, against pullback's in-process results."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from opencl_platform import NO_OPENCL, opencl_environment

import pullback as pb
from benchmarks.workloads import gmm, mlp
from tests.runtime.export_harness import run_c

pytestmark = NO_OPENCL


def close(got, want, rtol):
    want = np.asarray(want)
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=rtol * scale)


@pytest.fixture(scope="module")
def problem():
    p = gmm.setup(d=3, k=4, n=12)
    return (*p.params, *p.data)


def _train(device):
    problem = mlp.setup(batch=8, widths=(6, 5, 4, 3))
    step, arrays = mlp.adam_step(problem, 1e-2)
    x, labels = problem.data
    return pb.compile(step, *arrays, x, labels, device=device), arrays, x, labels


@pytest.fixture(scope="module")
def library(tmp_path_factory, problem):
    alpha, means, icf, x = problem

    def objective(alphas, means, icf):
        return gmm.objective(alphas, means, icf, x)

    entries = {
        "gradient": pb.compile(objective, alpha, means, icf, mode="withgradient",
                               device="opencl"),
        "hessian": pb.compile(lambda icf: objective(alpha, means, icf), icf, mode="hessian",
                              device="opencl"),
        "train_step": _train("opencl")[0],
    }
    folder = tmp_path_factory.mktemp("clgmm")
    return pb.export(folder, "clgmm", entries), entries


def test_manifest_and_symbols(library):
    lib, _ = library
    manifest = json.loads(lib.manifest.read_text())
    assert manifest["device"] == "opencl"
    assert manifest["entries"]["gradient"]["symbol"] == "clgmm_gradient"
    nm = subprocess.run(["nm", "-D", "--defined-only", str(lib.shared_library)],
                        capture_output=True, text=True, check=True).stdout
    assert all(line.split()[-1].startswith("clgmm_") for line in nm.splitlines())
    needed = subprocess.run(["readelf", "-d", str(lib.shared_library)], capture_output=True,
                            text=True, check=True).stdout
    assert "OpenCL" not in needed  # the ICD loader is opened when a context is made


def test_from_c_matches_cpu(library, problem, tmp_path):
    lib, entries = library
    alpha, means, icf, x = problem
    manifest = json.loads(lib.manifest.read_text())
    with np.load(lib.captured_values) as stored:
        captured = {k: stored[k] for k in stored.files}
    _, arrays, xt, labels = _train("cpu")
    named = {"alphas": alpha, "means": means, "icf": icf, "x": x, "alpha": alpha}
    step_in = dict(zip([i["name"] for i in manifest["entries"]["train_step"]["inputs"]],
                       [*arrays, xt, labels]))
    inputs = {}
    for entry in ("gradient", "hessian", "train_step"):
        spec = manifest["entries"][entry]["inputs"]
        source = step_in if entry == "train_step" else named
        inputs[("clgmm", entry)] = [source.get(i["name"], captured.get(i["name"]))
                                    for i in spec]
    got = run_c(tmp_path, [(lib.manifest, [("gradient", 1), ("hessian", 1),
                                           ("train_step", 2)])], inputs,
                env=opencl_environment())
    cpu = pb.compile(lambda a, m, i: gmm.objective(a, m, i, x), alpha, means, icf,
                     mode="withgradient")
    val, grads = cpu(alpha, means, icf)
    g = got[("clgmm", "gradient")]
    close(g["result"], val, 1e-12)
    for name, want in zip(("grad_alphas", "grad_means", "grad_icf"), grads):
        close(g[name], want, 1e-12)
    hess = pb.hessian(lambda i: gmm.objective(alpha, means, i, x), icf)
    close(got[("clgmm", "hessian")]["hessian_icf"], hess, 1e-12)
    step, params, xt, labels = _train("cpu")
    ours = [a.copy() for a in params]
    losses = [step(*ours, xt, labels) for _ in range(2)]
    t = got[("clgmm", "train_step")]
    close(t["result"], losses[-1], 1e-6)
    for spec, want in zip(manifest["entries"]["train_step"]["inputs"], ours):
        close(t[spec["name"]], want, 1e-6)


def test_loader_in_a_fresh_process_with_a_binary_cache(library, problem, tmp_path):
    lib, entries = library
    alpha, means, icf, _ = problem
    np.savez(tmp_path / "in.npz", alpha=alpha, means=means, icf=icf)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        sys.path.insert(0, {str(lib.directory)!r})
        import clgmm
        with np.load({str(tmp_path / "in.npz")!r}) as f:
            val, grads = clgmm.load().gradient(f["alpha"], f["means"], f["icf"])
        np.savez({str(tmp_path / "out.npz")!r}, val=val, *grads)
    """)
    env = opencl_environment()
    env["PULLBACK_OPENCL_CACHE_DIR"] = str(tmp_path / "cache")
    for run in range(2):  # the second process loads the binaries the first one cached
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        if run == 0:
            cached = sorted((tmp_path / "cache").glob("*.clbin"))
            assert len(cached) == 3, cached  # one per entry
            stamps = [p.stat().st_mtime_ns for p in cached]
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # loaded, not rebuilt
    val, grads = entries["gradient"](alpha, means, icf)
    with np.load(tmp_path / "out.npz") as out:
        close(out["val"], val, 1e-12)
        for k, want in enumerate(grads):
            close(out[f"arr_{k}"], want, 1e-12)


def test_no_opencl_gives_an_error_string(library, tmp_path):
    lib, _ = library
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(lib.directory)!r})
        import clgmm
        try:
            clgmm.load()
        except clgmm.LibraryError as e:
            print("refused:", e)
    """)
    env = opencl_environment()
    env["PULLBACK_OPENCL_LIBRARY"] = str(tmp_path / "libOpenCL-missing.so")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "libOpenCL-missing.so" in done.stdout


def test_mixed_devices_are_refused(tmp_path):
    x = np.ones(3)
    with pytest.raises(ValueError, match="compiled for different devices"):
        pb.export(tmp_path, "mixed", {
            "a": pb.compile(lambda x: pb.sum(x), x),
            "b": pb.compile(lambda x: pb.sum(x), x, device="opencl")})


def test_opencl_host_compiles_without_warnings(tmp_path, monkeypatch):
    """The OpenCL library's C (host, context, wrappers; here an entry that keeps nothing
    in the context) with -Wall -Wextra -Wshadow as errors, then run."""
    import functools

    import pullback.library_export as library_export

    monkeypatch.setattr(library_export, "build_shared_library", functools.partial(
        library_export.build_shared_library,
        flags=["-std=c11", "-Wall", "-Wextra", "-Werror", "-Wshadow"]))
    x = np.array([0.5, -1.0, 2.0])
    c = pb.compile(lambda x: pb.sum(x * x * x), x, mode="withgradient", device="opencl")
    for key, value in opencl_environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PULLBACK_OPENCL_CACHE_DIR", str(tmp_path / "cache"))
    value, (grad,) = pb.export(tmp_path, "strictcl", {"f": c}).load().f(x)
    close(value, np.sum(x ** 3), 1e-12)
    close(grad, 3 * x ** 2, 1e-12)
