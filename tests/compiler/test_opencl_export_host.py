"""The C host of an exported OpenCL entry, built with the C compiler and run on PoCL.

Each test compiles a function with `pb.compile(..., device="opencl")`, generates the
entry's C (`opencl_entry_c`), adds a small `main` that reads the inputs from a file,
calls init and run and writes the outputs, builds it with the C compiler that export
uses and runs it in a subprocess; the outputs are checked against numpy or the CPU
(float64: 1e-12 relative, float32: 1e-6). The binary cache next to the program is
checked too: a second process loads the program from it, and a damaged entry is
rebuilt, never loaded."""

from __future__ import annotations

import hashlib
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from opencl_platform import NO_OPENCL, opencl_environment

import pullback as pb
from pullback.compiler.backends import disk_cache
from pullback.compiler.export.opencl_host import OpenCLExportError, opencl_entry_c
from pullback.compiler.export.toolchain import find_c_compiler

pytestmark = NO_OPENCL

HARNESS = r"""
int main(int argc, char **argv) {
    static const size_t in_bytes[] = { {IN_BYTES} }, out_bytes[] = { {OUT_BYTES} };
    void *inputs[{N_IN}], *outputs[{N_OUT}];
    char err[8192];
    size_t i;
    int runs = argc > 4 ? atoi(argv[4]) : 1, r;
    FILE *f = fopen(argv[2], "rb");
    entry_state *s = (entry_state *)malloc(entry_state_bytes());
    if (f == NULL || s == NULL) return 10;
    for (i = 0; i < {N_IN}; ++i) {
        inputs[i] = malloc(in_bytes[i] ? in_bytes[i] : 1);
        if (fread(inputs[i], 1, in_bytes[i], f) != in_bytes[i]) return 11;
    }
    fclose(f);
    for (i = 0; i < {N_OUT}; ++i) outputs[i] = malloc(out_bytes[i] ? out_bytes[i] : 1);
    if (entry_init(s, argv[1][0] ? argv[1] : NULL, err, sizeof err) != 0) {
        fprintf(stderr, "init failed: %s\n", err);
        return 2;
    }
    printf("origin %s\n", entry_build_origin(s));
    if (entry_run(s, (const void *const *)inputs, NULL, err, sizeof err) != PBCL_E_USAGE ||
        strstr(err, "output 0 is a null pointer") == NULL) return 13;
    for (r = 0; r < runs; ++r)
        if (entry_run(s, (const void *const *)inputs, outputs, err, sizeof err) != 0) {
            fprintf(stderr, "run failed: %s\n", err);
            return 3;
        }
    entry_release(s);
    entry_release(s);
    if (entry_run(s, (const void *const *)inputs, outputs, err, sizeof err) == 0) return 12;
    if (argc > 5 && atoi(argv[5]) > 0) { /* once more, in a state made again */
        if (entry_init(s, argv[1][0] ? argv[1] : NULL, err, sizeof err) != 0 ||
            entry_run(s, (const void *const *)inputs, outputs, err, sizeof err) != 0) {
            fprintf(stderr, "second state failed: %s\n", err);
            return 4;
        }
        printf("origin %s\n", entry_build_origin(s));
        entry_release(s);
    }
    f = fopen(argv[3], "wb");
    for (i = 0; i < {N_OUT}; ++i) fwrite(outputs[i], 1, out_bytes[i], f);
    for (i = 0; i < {N_IN}; ++i) fwrite(inputs[i], 1, in_bytes[i], f);
    fclose(f);
    free(s);
    return 0;
}
"""


class Program:
    """One compiled function's entry, built into a test program in `folder`."""

    def __init__(self, compiled: pb.Compiled, folder: Path, name: str = "entry"):
        self.executable = compiled._compiled.executable
        spec = self.executable.spec
        self.inputs, self.outputs = spec.inputs, spec.outputs
        self.folder = folder
        self.cache = folder / "cache"
        main = (HARNESS.replace("{IN_BYTES}", self._bytes(self.inputs))
                .replace("{OUT_BYTES}", self._bytes(self.outputs))
                .replace("{N_IN}", str(max(len(self.inputs), 1)))
                .replace("{N_OUT}", str(max(len(self.outputs), 1))))
        source = folder / "harness.c"
        source.write_text(opencl_entry_c(name, self.executable) + main)
        self.binary = folder / "harness"
        subprocess.run([*find_c_compiler(), "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror",
                        "-o", str(self.binary), str(source), "-ldl"], check=True)

    @staticmethod
    def _bytes(arrays: list[tuple[np.dtype, tuple[int, ...]]]) -> str:
        return ", ".join(str(int(np.prod(s, dtype=np.int64)) * np.dtype(d).itemsize)
                         for d, s in arrays) or "0"

    def run(self, *arrays: np.ndarray, runs: int = 1, cache: Path | None | bool = True,
            env: dict[str, str] | None = None, again: bool = False
            ) -> tuple[str, list[np.ndarray], list[np.ndarray]]:
        """(build origin, outputs, inputs after the calls) of the C program; `cache`:
        the cache folder (True: the program's, False: none); `again`: then release the
        state, make it again and call once more (origin: both)."""
        folder = self.cache if cache is True else "" if cache is False else cache
        in_file, out_file = self.folder / "in.bin", self.folder / "out.bin"
        in_file.write_bytes(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays))
        done = subprocess.run([str(self.binary), str(folder),
                               str(in_file), str(out_file), str(runs), str(int(again))],
                              env=env or opencl_environment(), capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        data = out_file.read_bytes()
        outs, offset = [], 0
        for dtype, shape in [*self.outputs, *self.inputs]:
            n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            outs.append(np.frombuffer(data[offset:offset + n], dtype).reshape(shape))
            offset += n
        origin = " ".join(done.stdout.split()[1::2])
        return origin, outs[:len(self.outputs)], outs[len(self.outputs):]

    def cache_entries(self) -> list[Path]:
        return sorted(self.cache.glob("*.clbin"))


def close(got: np.ndarray, want: np.ndarray) -> None:
    rtol = 1e-12 if got.dtype == np.float64 else 1e-6
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max(initial=1))


def entry_key(source: str) -> str:
    """The cache key the C host uses for `source` on the default device, rebuilt here
    from what pyopencl reports: format, source, device, driver, platform version and
    build options, each ended by a NUL."""
    from pullback.compiler.backends.opencl import select_device

    device = select_device(None)
    parts = ("pullback-opencl-export-binary-1", source, device.name, device.driver_version,
             device.platform.version, "")
    return "".join(f"{part}\0" for part in parts)


def check_entry_file(path: Path, source: str) -> None:
    """The entry is a whole, current `disk_cache` entry for the key of `source` (read by
    the Python cache code and hashlib, apart from the C code that wrote it)."""
    payload = disk_cache.decode_entry(entry_key(source), path.read_bytes())
    assert payload is not None and len(payload) > 0


RNG = np.random.default_rng(7)


def test_elementwise_float64(tmp_path: Path) -> None:
    x, y = RNG.standard_normal((37, 5)), RNG.standard_normal((37, 5))
    c = pb.compile(lambda x, y: pb.sin(x) * y + pb.exp(x), x, y, mode="value",
                   device="opencl")
    origin, (out,), _ = Program(c, tmp_path).run(x, y)
    assert origin == "source"
    close(out, np.sin(x) * y + np.exp(x))


def test_long_reduction_float32(tmp_path: Path) -> None:
    """A reduction long enough to be split across a work-group (group-reduce)."""
    x = RNG.uniform(0.5, 1.5, 20000).astype(np.float32)
    c = pb.compile(lambda x: pb.sum(x * x), x, mode="value", device="opencl")
    assert "group-reduce" in c.opencl_source
    _, (out,), _ = Program(c, tmp_path).run(x)
    want = np.sum(x.astype(np.float64) ** 2)
    np.testing.assert_allclose(out, want, rtol=1e-6)


def test_matmul_float64(tmp_path: Path) -> None:
    a, b = RNG.standard_normal((13, 29)), RNG.standard_normal((29, 11))
    c = pb.compile(lambda a, b: a @ b, a, b, mode="value", device="opencl")
    _, (out,), _ = Program(c, tmp_path).run(a, b)
    close(out, a @ b)


def test_gradient_float64(tmp_path: Path) -> None:
    """value and gradients of sum(tanh(x @ w)): products with transposes, reductions."""
    x, w = RNG.standard_normal((9, 6)), RNG.standard_normal((6, 4))
    c = pb.compile(lambda x, w: pb.sum(pb.tanh(x @ w)), x, w, mode="withgradient",
                   device="opencl")
    _, outs, _ = Program(c, tmp_path).run(x, w)
    t = np.tanh(x @ w)
    g = 1 - t * t
    value, gx, gw = outs
    close(value, np.sum(t))
    close(gx, g @ w.T)
    close(gw, x.T @ g)


def test_gradient_float32(tmp_path: Path) -> None:
    x = RNG.uniform(-1, 1, (8, 3)).astype(np.float32)
    c = pb.compile(lambda x: pb.sum(pb.exp(x) * x), x, mode="gradient", device="opencl")
    _, (value, gx), _ = Program(c, tmp_path).run(x)  # gradient mode: value, then gradient
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(value, np.sum(np.exp(x64) * x64), rtol=1e-6)
    np.testing.assert_allclose(gx, np.exp(x64) * (1 + x64), rtol=1e-6)


def test_inputs_written_in_place(tmp_path: Path) -> None:
    """An input the function writes is written back to the caller's array, each call."""
    def step(p, g):
        p -= 0.1 * g
        p[0] = 0.0
        return pb.sum(p * g)

    p, g = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 0.5, -1.0])
    c = pb.compile(step, p.copy(), g, device="opencl")
    assert c._compiled.executable.spec.written == (0,)
    _, (out,), (p_after, g_after) = Program(c, tmp_path).run(p, g, runs=2)
    want = p - 0.2 * g
    want[0] = 0.0
    close(p_after, want)
    close(g_after, g)
    close(out, np.sum(want * g))


def test_binary_cache_second_run_loads_it(tmp_path: Path) -> None:
    x = RNG.standard_normal(50)
    c = pb.compile(lambda x: pb.sum(pb.cos(x)), x, mode="gradient", device="opencl")
    prog = Program(c, tmp_path)
    assert prog.run(x)[0] == "source"
    (entry,) = prog.cache_entries()
    check_entry_file(entry, c.opencl_source)
    before = entry.stat()
    origin, (_, g), _ = prog.run(x, again=True)
    assert origin == "disk disk"
    after = entry.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    close(g, -np.sin(x))
    assert prog.run(x, cache=False)[0] == "source"
    unwritable = tmp_path / "a-file" / "cache"
    unwritable.parent.write_text("not a folder")
    origin, (_, g), _ = prog.run(x, cache=unwritable)  # the cache is only an optimisation
    assert origin == "source"
    close(g, -np.sin(x))


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x5A
    return bytes(out)


def _reentry(d: bytes, payload: bytes) -> bytes:
    """A whole, checked entry for the same key holding `payload` (the driver must
    refuse it; it is then rebuilt)."""
    key_hash = d[12:44]
    return struct.pack("<8sI32s32sQ", disk_cache.MAGIC, disk_cache.FORMAT_VERSION, key_hash,
                       hashlib.sha256(payload).digest(), len(payload)) + payload


H = disk_cache.HEADER_SIZE
DAMAGE = {
    "empty": lambda d: b"",
    "truncated-in-header": lambda d: d[:H // 2],
    "truncated-half": lambda d: d[:len(d) // 2],
    "one-byte-long": lambda d: d + b"\0",
    "bit-flip-magic": lambda d: _flip(d, 0),
    "bit-flip-version": lambda d: _flip(d, 8),
    "bit-flip-key-hash": lambda d: _flip(d, 14),
    "bit-flip-data-hash": lambda d: _flip(d, 50),
    "bit-flip-length": lambda d: _flip(d, H - 8),
    "bit-flip-payload": lambda d: _flip(d, H + (len(d) - H) // 2),
    "payload-zeroed": lambda d: d[:H] + bytes(len(d) - H),
    "raw-payload": lambda d: d[H:],
    "intact-but-not-a-binary": lambda d: _reentry(d, b"not a device binary" * 50),
}


@pytest.fixture(scope="module")
def cached_program(tmp_path_factory: pytest.TempPathFactory) -> tuple[Program, np.ndarray]:
    x = RNG.standard_normal((7, 3))
    c = pb.compile(lambda x: pb.sum(x * pb.sin(x)), x, mode="gradient", device="opencl")
    prog = Program(c, tmp_path_factory.mktemp("damaged"))
    assert prog.run(x)[0] == "source"
    return prog, x


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_entry_is_rebuilt(cached_program: tuple[Program, np.ndarray],
                                        damage: str) -> None:
    prog, x = cached_program
    (entry,) = prog.cache_entries()
    good = entry.read_bytes()
    entry.write_bytes(DAMAGE[damage](good))
    origin, (_, g), _ = prog.run(x)
    assert origin == "source"
    close(g, np.sin(x) + x * np.cos(x))
    (entry,) = prog.cache_entries()
    check_entry_file(entry, prog.executable.opencl_source)
    assert prog.run(x)[0] == "disk"


def test_entry_whose_loader_crashed_is_rebuilt(
        cached_program: tuple[Program, np.ndarray]) -> None:
    """A loading marker left by a process that is gone: the entry is not loaded again."""
    prog, x = cached_program
    (entry,) = prog.cache_entries()
    dead = subprocess.Popen(["true"])
    dead.wait()
    marker = entry.with_name(f"{entry.name}.loading.{dead.pid}.1")
    marker.touch()
    assert prog.run(x)[0] == "source"
    assert not marker.exists()
    assert prog.run(x)[0] == "disk"


def test_errors_name_the_cause(tmp_path: Path) -> None:
    x = RNG.standard_normal(4)
    prog = Program(pb.compile(lambda x: pb.sum(x), x, mode="value", device="opencl"),
                   tmp_path)
    inputs = tmp_path / "x.bin"
    inputs.write_bytes(x.tobytes())
    env = opencl_environment()
    env["PULLBACK_OPENCL_LIBRARY"] = str(tmp_path / "no-such-libOpenCL.so")
    done = subprocess.run([str(prog.binary), "", str(inputs), "/dev/null"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "cannot load the OpenCL library" in done.stderr
    assert "PULLBACK_OPENCL_LIBRARY" in done.stderr
    env = opencl_environment()
    env["OCL_ICD_VENDORS"] = str(tmp_path)  # a folder without drivers
    done = subprocess.run([str(prog.binary), "", str(inputs), "/dev/null"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "no OpenCL platform found" in done.stderr
    env = opencl_environment()
    env["PULLBACK_OPENCL_DEVICE"] = "no device is called this"
    done = subprocess.run([str(prog.binary), "", str(inputs), "/dev/null"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "no OpenCL device matches" in done.stderr and "0:0" in done.stderr


@pytest.mark.parametrize("spec", ["0", "0:0", "opencl:0:0", "pthread", " Portable Computing "])
def test_device_chosen_by_environment(tmp_path: Path, spec: str) -> None:
    x = RNG.standard_normal(6)
    prog = Program(pb.compile(lambda x: pb.sum(x * x), x, mode="value", device="opencl"),
                   tmp_path)
    env = opencl_environment()
    env["PULLBACK_OPENCL_DEVICE"] = spec
    _, (out,), _ = prog.run(x, env=env)
    close(out, np.sum(x * x))


def test_host_calls_are_refused() -> None:
    x = RNG.standard_normal(3)

    def f(x):
        return pb.sum(pb.hook(lambda g: 2 * g, pb.sin(x)))

    c = pb.compile(f, x, mode="gradient", device="opencl")
    with pytest.raises(OpenCLExportError, match="calls Python during a call"):
        opencl_entry_c("entry", c._compiled.executable)
    with pytest.raises(OpenCLExportError, match="C identifier"):
        opencl_entry_c("not an identifier",
                       pb.compile(lambda x: pb.sum(x), x, mode="value",
                                  device="opencl")._compiled.executable)


def _training_step(device: str) -> tuple[pb.Compiled, dict[str, np.ndarray], np.ndarray,
                                         np.ndarray]:
    O = pb.optimisers
    rng = np.random.default_rng(3)
    model = {"w": rng.standard_normal((4, 3)), "b": np.zeros(3)}
    x, y = rng.standard_normal((16, 4)), rng.standard_normal((16, 3))
    state = O.setup(O.Adam(0.05), model)

    def loss(model, x, y):
        return pb.mean((pb.tanh(x @ model["w"] + model["b"]) - y) ** 2)

    def train_step(model, x, y):
        value, (grads, _, _) = pb.withgradient(loss, model, x, y)
        O.update(state, model, grads)
        return value

    return pb.compile(train_step, model, x, y, device=device), model, x, y


def test_training_step_updates_model_and_adam_state(tmp_path: Path) -> None:
    """A compiled MLP step with Adam: the C host's loss and its in-place updates of the
    model and the optimiser state, over three calls, against the step on the CPU."""
    step, model, x, y = _training_step("opencl")
    _, inputs = step._inputs((model, x, y))
    assert step._compiled.executable.spec.written
    _, (value,), after = Program(step, tmp_path).run(*inputs, runs=3)
    cpu, model, x, y = _training_step("cpu")
    for _ in range(3):
        want = cpu(model, x, y)
    _, want_inputs = cpu._inputs((model, x, y))
    close(value, np.asarray(want))
    for got, expected in zip(after, want_inputs, strict=True):
        close(got, expected)


def test_gmm_objective_and_gradient(tmp_path: Path) -> None:
    """The ADBench GMM objective with its gradient (30 launches) against the CPU."""
    from benchmarks.workloads import gmm

    problem = gmm.setup(d=3, k=4, n=12)
    alpha, means, icf = problem.params
    (x,) = problem.data

    def objective(alphas, means, icf):
        return gmm.objective(alphas, means, icf, x)

    c = pb.compile(objective, alpha, means, icf, mode="withgradient", device="opencl")
    _, inputs = c._inputs((alpha, means, icf))
    _, (value, *grads), _ = Program(c, tmp_path).run(*inputs)
    want_value, want_grads = pb.compile(objective, alpha, means, icf,
                                        mode="withgradient")(alpha, means, icf)
    close(value, np.asarray(want_value))
    for got, want in zip(grads, want_grads, strict=True):
        close(got, want)
