"""Kernel libraries under hostile input: names that collide with the generated C, with
standard headers or with each other, and the generated C compiled with every warning on."""

from __future__ import annotations

import functools
import json
import subprocess

import numpy as np
import pytest

import pullback as pb
import pullback.library_export as library_export
from pullback.compiler.export.toolchain import find_c_compiler


def _sum_of_products(new, NULL, linux, t, arrays, say, HEAD, status):  # noqa: N803
    return pb.sum(new * NULL * linux * t * arrays * say * HEAD * status)


def test_argument_names_that_are_words_of_c_or_of_the_generated_code(tmp_path):
    """C++ keywords, standard and predefined macros, and the names of the wrapper's own
    variables and functions are all fine as argument names."""
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(3) for _ in range(8)]
    c = pb.compile(_sum_of_products, *xs, mode="withgradient")
    lib = pb.export(tmp_path, "words", {"e": c})
    names = [i["name"] for i in json.loads(lib.manifest.read_text())["entries"]["e"]["inputs"]]
    assert names == ["new_", "NULL_", "linux_", "t", "arrays", "say", "HEAD_", "status"]
    value, grads = lib.load().e(*xs)
    product = np.prod(xs, axis=0)
    np.testing.assert_allclose(value, product.sum(), rtol=1e-12)
    for k, g in enumerate(grads):  # d/dx_k sum(prod) = prod of the others
        others = np.prod([x for j, x in enumerate(xs) if j != k], axis=0)
        np.testing.assert_allclose(g, others, rtol=1e-12)
    source = tmp_path / "user.cpp"
    source.write_text('#include "words.h"\nint main() { words_context *c = words_context_new();'
                      '\n words_context_free(c); return 0; }\n')
    cxx = [c for c in ("g++", "clang++") if subprocess.run(["which", c],
                                                            capture_output=True).returncode == 0]
    if cxx:  # the header's prototypes must also parse as C++
        done = subprocess.run([cxx[0], "-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic",
                               "-fsyntax-only", f"-I{tmp_path}", str(source)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_names_that_would_collide_are_refused(tmp_path):
    x = np.arange(3.0)
    c = pb.compile(lambda v: pb.sum(v * v), x, mode="gradient")
    with pytest.raises(ValueError, match="differ only in case"):
        pb.export(tmp_path, "cases", {"f": c, "F": c})
    with pytest.raises(ValueError, match="CLASH_A_B_C_SIZE"):
        pb.export(tmp_path, "clash", {"a": pb.compile(lambda b_c: pb.sum(b_c * b_c), x),
                                      "a_b": pb.compile(lambda c: pb.sum(c * c), x)})
    with pytest.raises(ValueError, match=r"own C function \(or type\) ctxent_context"):
        pb.export(tmp_path, "ctxent", {"context": c})
    for name, why in (("string", "hides the C standard header <string.h>"),
                      ("json", "hides the Python module 'json'"),
                      ("m", "hides the system library libm"),
                      ("numpy", "hides the Python module 'numpy'"),
                      ("lambda", "Python cannot import")):
        with pytest.raises(ValueError, match=why):
            pb.export(tmp_path, name, {"f": c})
    assert not list(tmp_path.iterdir())


def test_arguments_differing_only_in_case_get_distinct_macros(tmp_path):
    x, y = np.arange(3.0), np.arange(4.0) + 1
    c = pb.compile(lambda x, X: pb.sum(x) * pb.sum(X * X), x, y, mode="gradient")  # noqa: N803
    lib = pb.export(tmp_path, "caps", {"g": c})
    text = lib.header.read_text()
    assert "#define CAPS_G_X_SIZE 3" in text and "#define CAPS_G_X_2_SIZE 4" in text
    gx, gy = lib.load().g(x, y)
    np.testing.assert_allclose(gx, np.full(3, np.sum(y * y)), rtol=1e-12)
    np.testing.assert_allclose(gy, 2 * y * np.sum(x), rtol=1e-12)


def test_generated_c_compiles_without_warnings(tmp_path, monkeypatch):
    """Every kind of wrapper (seeds, kept blocks, zeros, constants, no temporaries,
    float32) with -Wall -Wextra -Wpedantic -Wshadow -Wconversion as errors."""
    if "ziglang" in " ".join(find_c_compiler()):
        flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-Wpedantic"]
    else:
        flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-Wpedantic", "-Wshadow",
                 "-Wconversion", "-Wno-sign-conversion"]
    monkeypatch.setattr(library_export, "build_shared_library",
                        functools.partial(library_export.build_shared_library, flags=flags))
    rng = np.random.default_rng(1)
    a, b, w = rng.standard_normal(4), rng.standard_normal((2, 3)), rng.standard_normal((3, 4))

    def f(a, b):
        return pb.sum(pb.tanh(b @ w) * a) + pb.sum(b ** 3)

    def h(x):
        return pb.sum(pb.exp(x) * x[::-1] + np.arange(4.0))

    def picked(x, i):
        return pb.sum(x[i] ** 2)

    entries = {"hessian": pb.compile(h, a, mode="hessian"),
               "diaghessian": pb.compile(f, a, b, mode="diaghessian"),
               "zeros": pb.compile(picked, a, np.array([1, 0]), mode="jacobian"),
               "f32": pb.compile(f, a.astype(np.float32), b.astype(np.float32),
                                 mode="withgradient")}
    lib = pb.export(tmp_path, "strict", entries).load()
    hess = lib.hessian(a)
    # sum_i exp(x_i) x_(n-1-i): H_ii = exp(x_i) x_(n-1-i), H_i,n-1-i = exp(x_i) + exp(x_n-1-i)
    want = np.diag(np.exp(a) * a[::-1])
    want += np.diag(np.exp(a))[::-1] + np.diag(np.exp(a))[::-1].T
    np.testing.assert_allclose(hess, want, rtol=1e-12)
    jx, ji = lib.zeros(a, np.array([1, 0]))
    np.testing.assert_allclose(jx, [[2 * a[0], 2 * a[1], 0, 0]], rtol=1e-12)
    np.testing.assert_array_equal(ji, np.zeros((1, 2)))


def test_exporting_again_over_a_loaded_library_runs_the_new_code(tmp_path):
    """The dynamic loader hands back an already opened library by path: a library
    exported again into the same folder in the same process must not run the old code
    with the new manifest."""
    x = np.array([0.0, 1.0, 2.0])
    first = pb.export(tmp_path, "again", {"f": pb.compile(lambda x: x * 2.0, x, mode="value")})
    old = first.load()
    np.testing.assert_array_equal(old.f(x), 2 * x)
    second = pb.export(tmp_path, "again", {"f": pb.compile(lambda x: x * 3.0, x, mode="value")})
    np.testing.assert_array_equal(second.load().f(x), 3 * x)
    third = pb.export(tmp_path, "again", {"f": pb.compile(lambda x, y: x * y, x, x + 1,
                                                          mode="value")})
    np.testing.assert_array_equal(third.load().f(x, x + 1), x * (x + 1))
    np.testing.assert_array_equal(old.f(x), 2 * x)  # the first stays what it was


def test_index_inputs_take_integers_only(tmp_path):
    """An index array the compiled code carries as float64 is refused as floats (1.7
    would be truncated silently), as `pb.compile` refuses it."""
    x, i = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 3])
    c = pb.compile(lambda x, i: pb.sum(x[i] ** 2), x, i, mode="withgradient")
    lib = pb.export(tmp_path, "index", {"e": c})
    spec = json.loads(lib.manifest.read_text())["entries"]["e"]["inputs"]
    assert [(s["name"], s["integers"]) for s in spec] == [("x", False), ("i", True)]
    loaded = lib.load()
    value, (grad, none) = loaded.e(x, np.array([2, 0], dtype=np.int32))
    assert value == 3.0 ** 2 + 1.0 ** 2 and none is None
    np.testing.assert_array_equal(grad, [2.0, 0.0, 6.0, 0.0])
    with pytest.raises(ValueError, match="'i' holds integers: it must be an integer array"):
        loaded.e(x, np.array([1.7, 2.2]))


def test_names_outside_ascii_and_after_sanitising(tmp_path):
    """`p['a.b']` and `p['a_b']` sanitise alike, and `p['α']` keeps its code point."""
    rng = np.random.default_rng(2)
    p = {"a.b": rng.standard_normal(2), "a_b": rng.standard_normal(3),
         "α": rng.standard_normal(2), "β": rng.standard_normal(4)}

    def f(p):
        return sum(pb.sum(v * v) * (k + 1) for k, v in enumerate(p.values()))

    lib = pb.export(tmp_path, "unicode", {"e": pb.compile(f, p, mode="withgradient")})
    spec = json.loads(lib.manifest.read_text())["entries"]["e"]
    assert [i["name"] for i in spec["inputs"]] == ["p_a_b", "p_a_b_2", "p_u03b1", "p_u03b2"]
    value, grads = lib.load().e(**dict(zip(["p_a_b", "p_a_b_2", "p_u03b1", "p_u03b2"],
                                           p.values())))
    want = sum(np.sum(v * v) * (k + 1) for k, v in enumerate(p.values()))
    np.testing.assert_allclose(value, want, rtol=1e-12)
    for k, (g, v) in enumerate(zip(grads, p.values())):
        np.testing.assert_allclose(g, 2 * (k + 1) * v, rtol=1e-12)


def test_loader_puts_none_where_an_argument_has_no_gradient(tmp_path):
    """As `pb.compile` does: `value, (gx, gi) = f(x, i)` with an index array i."""
    x, i, m = np.array([1.0, 2.0, 3.0]), np.array([2, 2, 0]), np.array([True, False, True])
    entries = {"g": pb.compile(lambda x, i: pb.sum(x[i] ** 2), x, i, mode="withgradient"),
               "d": pb.compile(lambda m, x: pb.sum(pb.where(m, x, 0.0) ** 3), m, x,
                               mode="diaghessian")}
    lib = pb.export(tmp_path, "nones", entries).load()
    value, (gx, gi) = lib.g(x, i)
    assert value == 2 * 3.0 ** 2 + 1.0 and gi is None
    np.testing.assert_array_equal(gx, [2.0, 0.0, 12.0])
    dm, dx = lib.d(m, x)
    assert dm is None
    np.testing.assert_array_equal(dx, [6.0, 0.0, 18.0])


def test_jacobian_with_params_in_the_order_of_the_params(tmp_path):
    """The function reads ys before xs; the loader's Jacobians follow Params([xs, ys])
    (as the Grads of the call iterate), not the reading order."""
    rng = np.random.default_rng(3)
    xs, ys = pb.array(rng.standard_normal(3)), pb.array(rng.standard_normal(4))
    params = pb.Params([xs, ys])

    def f():
        return pb.tanh(ys[0:2] * 2) + pb.sum(xs ** 2)

    lib = pb.export(tmp_path, "ordered", {"j": pb.compile(f, params, mode="jacobian")})
    jx, jy = lib.load().j()
    np.testing.assert_allclose(jx, np.tile(2 * np.asarray(xs), (2, 1)), rtol=1e-12)
    want = np.zeros((2, 4))
    want[[0, 1], [0, 1]] = 2 * (1 - np.tanh(2 * np.asarray(ys[:2])) ** 2)
    np.testing.assert_allclose(jy, want, rtol=1e-12, atol=1e-15)


def test_loader_frees_the_context_of_a_thread_that_ended(tmp_path):
    """One context per thread, freed with the thread: a thread per request does not
    keep a context (the whole memory plan) per request alive."""
    import threading

    x = np.linspace(-1.0, 1.0, 50)
    c = pb.compile(lambda x: pb.sum(x ** 3), x, mode="withgradient")
    lib = pb.export(tmp_path, "perthread", {"f": c}).load()
    results = []
    for _ in range(40):
        t = threading.Thread(target=lambda: results.append(lib.f(x)))
        t.start()
        t.join()
    assert len(lib._contexts) <= 2  # the loading thread's, and at most one not yet freed
    for value, (grad,) in results:
        np.testing.assert_allclose(value, np.sum(x ** 3), atol=1e-12)
        np.testing.assert_allclose(grad, 3 * x ** 2, rtol=1e-12)
    lib.close()
    assert not lib._contexts


def test_loader_cuts_no_float_scalar_to_an_integer(tmp_path):
    x = np.array([0.5, -1.0, 2.0])
    c = pb.compile(lambda x, k: x * k, x, np.array(2), mode="value")
    lib = pb.export(tmp_path, "scalars", {"f": c}).load()
    np.testing.assert_array_equal(lib.f(x, 3), 3 * x)
    np.testing.assert_array_equal(lib.f(x, np.int32(3)), 3 * x)
    for bad in (2.7, np.float64(2.0)):
        with pytest.raises(ValueError, match="input 'k' must be a C-contiguous int64 array"):
            lib.f(x, bad)


def test_derivatives_for_a_0d_argument_have_the_shapes_of_pb_compile(tmp_path):
    """A Jacobian column or Hessian for a 0-d argument is (rows, 1) / (1, 1), as
    `pb.compile` returns it, not a flattened vector or a bare number."""
    s, v = np.array(0.7), np.array([0.5, -1.0, 2.0])
    entries = {"j": pb.compile(lambda s, v: pb.sin(v * s), s, v, mode="jacobian"),
               "h": pb.compile(lambda s: pb.sin(s) * s, s, mode="hessian"),
               "hr": pb.compile(lambda s: pb.sin(s) * s, s, mode="hessian_reverse")}
    lib = pb.export(tmp_path, "zerod", entries).load()
    js, jv = lib.j(s, v)
    assert js.shape == (3, 1) and jv.shape == (3, 3)
    np.testing.assert_allclose(js[:, 0], v * np.cos(v * s), rtol=1e-12)
    np.testing.assert_allclose(jv, np.diag(s * np.cos(v * s)), rtol=1e-12)
    want = 2 * np.cos(s) - s * np.sin(s)  # (x sin x)'' = 2 cos x - x sin x
    for h in (lib.h(s), lib.hr(s)):
        assert h.shape == (1, 1)
        np.testing.assert_allclose(h[0, 0], want, rtol=1e-12)


def test_export_replaces_only_files_of_its_own(tmp_path):
    """`pb.export(".", "model", ...)` run from model.py must not overwrite model.py."""
    source = tmp_path / "model.py"
    source.write_text("import pullback as pb\n")
    header = tmp_path / "other.h"
    header.write_text("int other;\n")
    c = pb.compile(lambda x: pb.sum(x * x), np.arange(3.0), mode="gradient")
    with pytest.raises(ValueError, match="model.py exists and is not a file of an exported"):
        pb.export(tmp_path, "model", {"g": c})
    with pytest.raises(ValueError, match="other.h exists and is not a file of an exported"):
        pb.export(tmp_path, "other", {"g": c})
    assert source.read_text() == "import pullback as pb\n"
    assert header.read_text() == "int other;\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.py", "other.h"]
    for _ in range(2):  # an earlier export's files are replaced
        (grad,) = pb.export(tmp_path, "mine", {"g": c}).load().g(np.arange(3.0))
        np.testing.assert_array_equal(grad, [0.0, 2.0, 4.0])


def test_exporting_process_does_not_keep_the_library_mapped(tmp_path):
    """The built file, once measured, is unmapped again: rewriting it in place later
    (`cp` over it) must not kill the exporting process with SIGBUS at exit."""
    import os
    from pathlib import Path

    lib = pb.export(tmp_path, "unmapped", {"f": pb.compile(lambda x: pb.sum(x * x),
                                                            np.ones(2))})
    inode = os.stat(lib.shared_library).st_ino
    mapped = {int(line.split()[4]) for line in Path("/proc/self/maps").read_text().splitlines()
              if len(line.split()) >= 6}
    assert inode not in mapped
