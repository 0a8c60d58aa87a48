"""Compile a generated program and compare it with independent references.

For each device:

* value: the compiled output against numpy running the same program text;
* gradient: `pb.withgradient` of `sum(output * weights)` against central finite
  differences of the numpy objective (every coordinate for small inputs, random
  directions otherwise);
* jvp: the `jvp` pass's output tangent along a random direction against the central
  difference of the numpy output along it;
* jacobian: `pb.jacobian` (the pullback batched by `vmap`) against the central
  differences of the numpy output along every coordinate (small inputs);
* hessian: `pb.hessian` of the objective over all inputs packed into one vector,
  against second-order central differences of the numpy objective;
* device: every quantity of a second device against the first (the CPU).

Finite differences use steps h, 2h and 4h: the Richardson combination is the
reference, the difference between h and 2h bounds its truncation error, and the
rounding error of the numpy evaluation (machine epsilon times the value scale, times
the op count, over the step) is added to the tolerance. Where the differences do not
shrink like h^2 even with smaller steps, or the truncation error exceeds `UNRELIABLE`
of the derivative's scale, the function is not smooth enough there for finite
differences and that check is skipped (counted, never passed).
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

import pullback as pb
from benchmarks.fuzzing.programs import LIMIT, Program, numpy_namespace
from pullback.compiler.context import make_context
from pullback.compiler.passes import get_pass
from pullback.devices import backend_of
from pullback.program import trace_program

EPS = float(np.finfo(np.float64).eps)
STEP = 1e-4            # first derivatives: central differences with h, 2h, 4h
STEP2 = 2e-3           # second derivatives
UNRELIABLE = 0.02      # h and 2h differ by more than this (relative): not smooth here
RTOL = 1e-7            # compiled derivative against the Richardson reference
VALUE_RTOL = 1e-9      # compiled value against numpy, per op (libm and summation order)
DEVICE_RTOL = 1e-9     # second device against the first, per op
COORDINATES_UP_TO = 32  # inputs of at most this many elements get a per-coordinate gradient
HESSIAN_UP_TO = 10     # inputs of at most this many elements get a Hessian check


@dataclasses.dataclass
class Failure:
    """One check that failed: its kind, the device and what differed."""

    kind: str    # value | gradient | jvp | jacobian | hessian | device | crash
    device: str
    detail: str


@dataclasses.dataclass
class Outcome:
    """The checks run on one program, those skipped (with why) and the failures."""

    checked: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failures: list[Failure] = dataclasses.field(default_factory=list)


# -- references ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Estimate:
    value: np.ndarray      # Richardson-combined central difference
    error: np.ndarray      # elementwise error bound: truncation + rounding
    reliable: bool


def _extrapolate(d: Callable[[float], np.ndarray], h: float,
                 noise: Callable[[float], float]) -> _Estimate:
    """Richardson extrapolation of a difference quotient `d(h)` whose error is c h^2.

    With steps h, 2h and 4h the successive differences must shrink by 4 (or be rounding
    noise) for the error model to hold; where they do not, the step is quartered (up to
    twice) and, failing that, the estimate is unreliable. The bound adds how far the
    combination moves from steps (h, 2h) to (h/2, h). `noise(h)` bounds the rounding
    error of `d(h)`.
    """
    for _ in range(3):
        d_half, d1, d2, d4 = d(h / 2), d(h), d(2 * h), d(4 * h)
        n = noise(h / 2)
        e1, e2 = d1 - d2, d2 - d4
        value = (4 * d1 - d2) / 3
        # Where higher-order terms still matter at these steps, the combination moves
        # when the steps halve: that movement is part of the error bound.
        drift = np.abs(value - (4 * d_half - d1) / 3)
        scale = float(np.max(np.abs(value), initial=0.0))
        quiet = (np.abs(e1) <= 30 * n) & (np.abs(e2) <= 30 * n)
        with np.errstate(all="ignore"):
            ratio = np.where(e1 != 0, e2 / np.where(e1 != 0, e1, 1.0), np.inf)
        converged = quiet | ((ratio >= 2.5) & (ratio <= 6.5))
        small = np.abs(e1) / 3 <= UNRELIABLE * (np.abs(value) + scale) + 30 * n
        if np.all(converged & small):
            return _Estimate(value, np.abs(e1) / 3 + drift + 2 * n, True)
        h /= 4
    return _Estimate(value, np.abs(e1) / 3 + drift + 2 * n, False)


def _noise(program: Program, magnitude: float) -> float:
    """Rounding error of one numpy evaluation of the program (its ops, its magnitudes)."""
    return 32 * EPS * (program.ops + 1) * max(LIMIT, magnitude)


def _directional(f: Callable[[list[np.ndarray]], np.ndarray], xs: list[np.ndarray],
                 ts: list[np.ndarray], noise: float) -> _Estimate:
    """d f(xs + s ts) / ds at s = 0."""
    def at(s: float) -> np.ndarray:
        return np.asarray(f([x + s * t for x, t in zip(xs, ts)]), dtype=np.float64)

    return _extrapolate(lambda h: (at(h) - at(-h)) / (2 * h), STEP, lambda h: noise / h)


def _hessian(f: Callable[[np.ndarray], float], v: np.ndarray, noise: float) -> _Estimate:
    """Second-order central differences of a scalar function of one vector."""
    n = v.size
    f0 = f(v)

    def at(h: float) -> np.ndarray:
        e = np.eye(n) * h
        hess = np.zeros((n, n))
        for i in range(n):
            hess[i, i] = (f(v + e[i]) - 2 * f0 + f(v - e[i])) / h**2
            for j in range(i):
                hess[i, j] = hess[j, i] = (f(v + e[i] + e[j]) - f(v + e[i] - e[j])
                                           - f(v - e[i] + e[j]) + f(v - e[i] - e[j])) / (4 * h**2)
        return hess

    return _extrapolate(at, STEP2, lambda h: 4 * noise / h**2)


# -- comparisons --------------------------------------------------------------------------


def _compare(got: Any, want: _Estimate, what: str) -> str | None:
    """None if `got` is within the estimate's error (plus RTOL), else what differed."""
    got = np.zeros_like(want.value) if got is None else np.asarray(got, dtype=np.float64)
    if got.shape != want.value.shape:
        return f"{what}: shape {got.shape}, expected {want.value.shape}"
    scale = float(np.max(np.abs(want.value), initial=0.0))
    tol = want.error + RTOL * (np.abs(want.value) + scale) + 1e-12
    bad = ~(np.abs(got - want.value) <= tol)
    if not np.any(bad):
        return None
    i = np.unravel_index(int(np.argmax(np.where(bad, np.abs(got - want.value) - tol, -1))),
                         got.shape) if got.ndim else ()
    return (f"{what}: {int(bad.sum())} of {got.size} entries differ; at {tuple(map(int, i))} "
            f"got {got[i]!r}, finite differences {want.value[i]!r} (tolerance {tol[i]:.3g})")


def _close(got: Any, want: Any, rtol: float, what: str, scale: float = 0.0) -> str | None:
    """None if `got` equals `want` to `rtol` of want's largest magnitude (or of `scale`,
    if larger), else what differed."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return f"{what}: shape {got.shape}, expected {want.shape}"
    scale = max(scale, float(np.max(np.abs(want), initial=0.0)))
    tol = rtol * (np.abs(want) + scale) + 1e-300
    bad = ~(np.abs(got - want) <= tol)
    if not np.any(bad):
        return None
    i = np.unravel_index(int(np.argmax(np.where(bad, np.abs(got - want), -1))), got.shape) \
        if got.ndim else ()
    return (f"{what}: {int(bad.sum())} of {got.size} entries differ; at {tuple(map(int, i))} "
            f"got {got[i]!r}, expected {want[i]!r} (rtol {rtol:.3g})")


# -- compiled quantities ------------------------------------------------------------------


def _jvp_executable(fn: Callable[..., Any], xs: list[np.ndarray], device: str) -> Any:
    """`fn`'s forward-mode derivative (`jvp` pass, cleanup) compiled for `device`."""
    program = trace_program(fn, xs)
    module = program.module.clone()
    ctx = make_context()
    get_pass("jvp")(func=program.name).apply(ctx, module)
    entry = program.name + "_jvp"
    for op in list(module.ops):
        if op.sym_name.data != entry:  # type: ignore[attr-defined]
            op.detach()
            op.erase()
    for name in ("simplify", "cse", "dce"):
        get_pass(name)().apply(ctx, module)
    kind, spec = backend_of(device)
    if kind == "opencl":
        from pullback.compiler.backends import opencl
        return program, opencl.compile_function(module, entry, device=spec)
    from pullback.compiler.backends import llvm
    return program, llvm.compile_function(module, entry)


def _packed(program: Program, fn: Callable[..., Any], ns: Any) -> Callable[[Any], Any]:
    """The objective as a function of every input packed into one vector."""
    shapes = [x.shape for x in program.inputs]
    offsets = np.cumsum([0] + [int(np.prod(s)) for s in shapes])

    def objective(v: Any) -> Any:
        xs = [ns.reshape(v[int(a):int(b)], s) for a, b, s in zip(offsets, offsets[1:], shapes)]
        return ns.sum(fn(*xs) * program.weights)

    return objective


@dataclasses.dataclass
class _Results:
    value: Any = None
    grads: Any = None
    jvp: Any = None
    jacobian: Any = None
    hessian: Any = None


def _crash(outcome: Outcome, device: str, what: str, err: BaseException) -> None:
    last = traceback.format_exception_only(type(err), err)[-1].strip()
    outcome.failures.append(Failure("crash", device, f"{what}: {last}"))


def check_program(program: Program, devices: tuple[str, ...] = ("cpu",), *,
                  jvp: bool = True, hessian: bool = True, jacobian: bool = False) -> Outcome:
    """Run every check on `program` for each device; the first device is the reference
    for the others."""
    outcome = Outcome()
    ns = numpy_namespace()
    f_np = program.function(ns)
    f_pb = program.function(pb)
    xs = program.inputs
    with np.errstate(all="ignore"):
        y = np.asarray(f_np(*xs), dtype=np.float64)
    rng = np.random.default_rng(len(program.statements))
    noise = _noise(program, float(np.max(np.abs(y), initial=0.0)))

    def objective(values: list[np.ndarray]) -> float:
        return float(np.sum(f_np(*values) * program.weights))

    total = sum(x.size for x in xs)
    if total <= COORDINATES_UP_TO:
        directions = [[np.zeros_like(x) for x in xs] for _ in range(total)]
        flat = [(k, j) for k, x in enumerate(xs) for j in range(x.size)]
        for d, (k, j) in zip(directions, flat):
            d[k].flat[j] = 1.0
    else:
        directions = [[rng.uniform(-1, 1, x.shape) for x in xs] for _ in range(3)]
    jac_ref = None
    with np.errstate(all="ignore"):
        if total <= COORDINATES_UP_TO:  # the output's columns give the gradient's entries
            cols = [_directional(lambda v: f_np(*v), xs, d, noise) for d in directions]
            w = program.weights
            refs = [_Estimate(np.asarray(np.sum(w * c.value)),
                              np.asarray(np.sum(np.abs(w) * c.error)), c.reliable) for c in cols]
            jac_ref = _Estimate(np.stack([np.ravel(c.value) for c in cols], axis=1),
                                np.stack([np.ravel(c.error) for c in cols], axis=1),
                                all(c.reliable for c in cols))
        else:
            refs = [_directional(objective, xs, d, noise) for d in directions]
        grad_ref = _Estimate(np.array([e.value for e in refs]), np.array([e.error for e in refs]),
                             all(e.reliable for e in refs))
        tangent = [rng.uniform(-1, 1, x.shape) for x in xs]
        jvp_ref = _directional(lambda v: f_np(*v), xs, tangent, noise)
        hess_ref = None
        if hessian and total <= HESSIAN_UP_TO:
            packed_np = _packed(program, f_np, ns)
            hess_ref = _hessian(lambda v: float(packed_np(v)),
                                np.concatenate([x.ravel() for x in xs]), noise)

    def aux_objective(*values: Any) -> Any:
        out = f_pb(*values)
        return pb.sum(out * program.weights), out

    results: dict[str, _Results] = {}
    for device in devices:
        r = results[device] = _Results()
        try:
            res = pb.withgradient(aux_objective, *xs, device=device)
            r.value, r.grads = res.val[1], res.grad
        except Exception as err:  # noqa: BLE001 - every crash is a finding
            _crash(outcome, device, "withgradient", err)
        if r.value is not None:
            _record(outcome, device, "value",
                    _close(r.value, y, VALUE_RTOL * (program.ops + 1), "value"))
            grads = [np.zeros_like(x) if g is None else np.asarray(g) for g, x in
                     zip(r.grads, xs)]
            got = np.array([sum(float(np.sum(g * t)) for g, t in zip(grads, d))
                            for d in directions])
            if grad_ref.reliable:
                _record(outcome, device, "gradient", _compare(got, grad_ref, "gradient"))
            else:
                outcome.skipped.append(f"{device} gradient: finite differences unreliable")
        if jvp:
            try:
                prog, exe = _jvp_executable(f_pb, xs, device)
                outs = exe.run([*prog.arguments(xs), *tangent])
                r.jvp = outs[-1]
                _record(outcome, device, "value",
                        _close(outs[0], y, VALUE_RTOL * (program.ops + 1), "jvp primal"))
                if jvp_ref.reliable:
                    _record(outcome, device, "jvp", _compare(r.jvp, jvp_ref, "jvp"))
                else:
                    outcome.skipped.append(f"{device} jvp: finite differences unreliable")
            except Exception as err:  # noqa: BLE001
                _crash(outcome, device, "jvp", err)
        if jacobian and jac_ref is not None:
            try:
                js = pb.jacobian(f_pb, *xs, device=device)
                r.jacobian = np.concatenate(
                    [np.reshape(j, (y.size, x.size)) for j, x in zip(js, xs)], axis=1)
                if jac_ref.reliable:
                    _record(outcome, device, "jacobian",
                            _compare(r.jacobian, jac_ref, "jacobian"))
                else:
                    outcome.skipped.append(f"{device} jacobian: finite differences unreliable")
            except Exception as err:  # noqa: BLE001
                _crash(outcome, device, "jacobian", err)
        if hess_ref is not None:
            try:
                packed_pb = _packed(program, f_pb, pb)
                v = np.concatenate([x.ravel() for x in xs])
                r.hessian = np.reshape(pb.hessian(packed_pb, v, device=device), (v.size, v.size))
                if hess_ref.reliable:
                    _record(outcome, device, "hessian", _compare(r.hessian, hess_ref, "hessian"))
                else:
                    outcome.skipped.append(f"{device} hessian: finite differences unreliable")
            except Exception as err:  # noqa: BLE001
                _crash(outcome, device, "hessian", err)
    _compare_devices(outcome, program, devices, results)
    return outcome


def _record(outcome: Outcome, device: str, kind: str, message: str | None) -> None:
    outcome.checked.append(f"{device} {kind}")
    if message is not None:
        outcome.failures.append(Failure(kind, device, message))


def _compare_devices(outcome: Outcome, program: Program, devices: tuple[str, ...],
                     results: dict[str, _Results]) -> None:
    """Every quantity of each further device against the first device's."""
    rtol = DEVICE_RTOL * (program.ops + 1)
    first = results[devices[0]]
    for device in devices[1:]:
        other = results[device]
        for field in ("value", "jvp", "jacobian", "hessian"):
            a, b = getattr(other, field), getattr(first, field)
            if a is not None and b is not None:
                _record(outcome, device, "device", _close(a, b, rtol, f"{field} vs {devices[0]}"))
        if other.grads is not None and first.grads is not None:
            # Norm-wise: every entry to rtol of the largest derivative of any argument. A
            # derivative that is a sum of terms cancelling to 0 (a scalar broadcast over
            # many elements) keeps rounding residues of the terms' size, not its own.
            largest = max((float(np.max(np.abs(g), initial=0.0)) for g in first.grads
                           if g is not None), default=0.0)
            for k, (a, b) in enumerate(zip(other.grads, first.grads)):
                if (a is None) != (b is None):
                    _record(outcome, device, "device",
                            f"gradient {k}: None on one device only")
                elif a is not None:
                    _record(outcome, device, "device",
                            _close(a, b, rtol, f"gradient {k} vs {devices[0]}", largest))
