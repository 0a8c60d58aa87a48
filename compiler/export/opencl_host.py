"""The C host of one exported OpenCL entry: `opencl_entry_c(prefix, executable)`.

The generated C99 does per call what `OpenCLExecutable` does on devices whose memory
is apart from the host's: it copies the inputs into device buffers, enqueues the
launch plan and copies the outputs (and the inputs written in place) back. Every
device buffer (inputs, outputs, one arena holding the temporaries as sub-buffers at
the memory plan's offsets) and every kernel object, with its arguments set, is made
once by `PREFIX_init`, so `PREFIX_run` allocates nothing. The program's OpenCL C is
embedded as a string literal; its binary is kept in a checked cache folder passed to
`PREFIX_init` (see `opencl_runtime`). OpenCL itself is loaded at run time, so the C
needs no OpenCL headers and links with libc alone (`-ldl` on old C libraries).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from pullback.compiler.backends.opencl.plan import HostCall, Step
from pullback.compiler.export.opencl_runtime import RUNTIME_C

if TYPE_CHECKING:
    from pullback.compiler.backends.opencl.executable import OpenCLExecutable

FP64_PRAGMA = "#pragma OPENCL EXTENSION cl_khr_fp64 : enable"
_SCALARS = {np.dtype(t) for t in (np.int32, np.int64, np.float32, np.float64)}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class OpenCLExportError(ValueError):
    """A compiled OpenCL function whose launch plan the C host cannot reproduce."""


def opencl_entry_c(prefix: str, executable: OpenCLExecutable) -> str:
    """C99 source (no main) defining, for one compiled OpenCL function:

      typedef struct PREFIX_state PREFIX_state;   (opaque: context, queue, program,
                                                   kernels, buffers)
      static size_t PREFIX_state_bytes(void);
      static int PREFIX_init(PREFIX_state *s, const char *cache_dir, char *err,
                             size_t err_len);
      static int PREFIX_run(PREFIX_state *s, const void *const *inputs,
                            void *const *outputs, char *err, size_t err_len);
      static void PREFIX_release(PREFIX_state *s);
      static const char *PREFIX_build_origin(const PREFIX_state *s);

    inputs/outputs: host pointers in the executable's input/output order, row-major,
    dtypes and shapes as compiled; inputs written in place are written back. Return 0
    on success, nonzero (a `PBCL_E_*` code) with a message in err on failure.
    `cache_dir` NULL or "" keeps no binary cache. `_init` zeroes the state first and
    releases what it made when it fails; `_release` may be called on a zeroed or
    released state. A state is used by one thread at a time. `_build_origin` says
    where the program came from: "disk" (the cache), "source" or "none".

    Raises `OpenCLExportError` when the plan runs Python (host call steps of
    `showgrad`, hooks or `eager_update` functions) or has an argument C cannot pass.
    """
    if not _IDENTIFIER.fullmatch(prefix):
        raise OpenCLExportError(f"the C prefix must be a C identifier, got {prefix!r}")
    spec = executable.spec
    steps = _launch_steps(executable.name, executable.steps)
    io_bytes = [int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
                for dtype, shape in (*spec.inputs, *spec.outputs)]
    plan = executable.plan
    source = executable.opencl_source
    n_in, n_out, n_tmp = len(spec.inputs), len(spec.outputs), len(plan.sizes)
    local = [max((s.launch.local_size + (1, 1))[d] for s in steps) if steps else 1
             for d in range(3)]
    group = max((int(np.prod(s.launch.local_size)) for s in steps), default=1)
    p = prefix
    out = [_comment(prefix, executable), RUNTIME_C, _source_literal(p, source)]
    out.append(_tables(p, n_in, io_bytes, plan.offsets, plan.sizes, steps, spec.written))
    out.append(_STATE.format(p=p, n_buf=max(n_in + n_out + n_tmp, 1), n_k=max(len(steps), 1)))
    out.append(_INIT.format(
        p=p, name=_c_string(f"{prefix} (@{executable.name})"),
        fp64=int(FP64_PRAGMA in source), group=group, local=", ".join(map(str, local)),
        align=_alignment(plan.offsets), arena=max(plan.arena_bytes, 1)))
    out.append(_RUN.format(p=p, name=_c_string(prefix)))
    return "\n".join(out)


def _launch_steps(name: str, steps: tuple[Step | HostCall, ...]) -> list[Step]:
    """The plan's launches; a plan that calls Python cannot be exported."""
    out = []
    for step in steps:
        if isinstance(step, HostCall):
            raise OpenCLExportError(
                f"@{name} calls Python during a call (a showgrad, hook or eager_update "
                "function on a gradient): an exported OpenCL entry runs without Python; "
                "remove the callback, use pb.hook(..., compiled=True), or use "
                "pb.optimisers.update inside the step")
        if len(step.launch.global_size) > 3:
            raise OpenCLExportError(f"@{name}: launch {step.launch.kernel} has "
                                    f"{len(step.launch.global_size)} dimensions (at most 3)")
        for a in step.args:
            if not isinstance(a, int) and (not isinstance(a, np.generic)
                                           or a.dtype not in _SCALARS):
                raise OpenCLExportError(
                    f"@{name}: launch {step.launch.kernel} takes an argument {a!r} the C "
                    "host cannot pass (buffers and int32/int64/float32/float64 scalars)")
        out.append(step)
    return out


def _alignment(offsets: tuple[int, ...]) -> int:
    """The largest power of two dividing every temporary's offset (0: all are 0)."""
    nonzero = [o for o in offsets if o]
    return min((o & -o for o in nonzero), default=0)


def _comment(prefix: str, executable: OpenCLExecutable) -> str:
    spec = executable.spec

    def describe(arrays: list[tuple[np.dtype, tuple[int, ...]]], written: tuple[int, ...]
                 ) -> str:
        return "".join(f"\n     {i}: {np.dtype(d).name} {tuple(s)}"
                       + (" (written in place)" if i in written else "")
                       for i, (d, s) in enumerate(arrays)) or " none"

    return (f"/* ---- OpenCL entry {prefix}: @{executable.name} ----\n"
            f"   inputs:{describe(spec.inputs, spec.written)}\n"
            f"   outputs:{describe(spec.outputs, ())}\n"
            f"   temporaries: {len(executable.plan.sizes)} in an arena of "
            f"{executable.plan.arena_bytes} bytes */")


def _c_string(text: str) -> str:
    """`text` as one C string literal (ASCII; escapes for quotes, backslashes, '?' and
    control characters)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\?':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif 32 <= code < 127:
            out.append(ch)
        elif code < 256:
            out.append(f"\\{code:03o}")
        else:
            out.extend(f"\\{b:03o}" for b in ch.encode())
    return '"' + "".join(out) + '"'


def _source_literal(p: str, source: str) -> str:
    lines = source.splitlines(keepends=True) or [""]
    body = "\n".join(f"    {_c_string(line)}" for line in lines)
    return f"static const char {p}_source[] =\n{body};\n"


def _size_list(values: list[int] | tuple[int, ...]) -> str:
    return ", ".join(f"{v}u" for v in values) if values else "0u"


def _arg(a: int | np.generic) -> str:
    if isinstance(a, int):
        return f"{{{a}, 0u, {{0}}}}"
    data = a.tobytes()
    return f"{{-1, {len(data)}u, {{{', '.join(str(b) for b in data)}}}}}"


def _tables(p: str, n_in: int, io_bytes: list[int], offsets: tuple[int, ...],
            sizes: tuple[int, ...], steps: list[Step], written: tuple[int, ...]) -> str:
    names = "".join(f"\n    {_c_string(s.launch.kernel)}," for s in steps) or '""'
    dims = ", ".join(str(len(s.launch.global_size)) for s in steps) or "0"

    def sizes3(t: tuple[int, ...]) -> str:
        return "{" + ", ".join(str(x) for x in (*t, *(1,) * (3 - len(t)))) + "}"

    glob = ", ".join(sizes3(s.launch.global_size) for s in steps) or "{0, 0, 0}"
    loc = ", ".join(sizes3(s.launch.local_size) for s in steps) or "{0, 0, 0}"
    args = "".join(f"\n    /* {i}: {s.launch.kernel} */ " + " ".join(_arg(a) + "," for a in s.args)
                   for i, s in enumerate(steps)) or "{0, 0u, {0}}"
    starts, n = [0], 0
    for s in steps:
        n += len(s.args)
        starts.append(n)
    counts = (f"static const unsigned {p}_n_inputs = {n_in}u, {p}_n_outputs = "
              f"{len(io_bytes) - n_in}u, {p}_n_temps = {len(sizes)}u,\n    {p}_n_launches = "
              f"{len(steps)}u, {p}_n_written = {len(written)}u;")
    return "\n".join([
        counts,
        f"static const size_t {p}_io_bytes[] = {{{_size_list(io_bytes)}}};",
        f"static const size_t {p}_temp_offsets[] = {{{_size_list(offsets)}}};",
        f"static const size_t {p}_temp_bytes[] = {{{_size_list(sizes)}}};",
        f"static const char *const {p}_kernel_names[] = {{{names}}};",
        f"static const unsigned {p}_dims[] = {{{dims}}};",
        f"static const size_t {p}_global[][3] = {{{glob}}};",
        f"static const size_t {p}_local[][3] = {{{loc}}};",
        f"static const pbcl_arg {p}_args[] = {{{args}}};",
        f"static const unsigned {p}_arg_start[] = {{{', '.join(map(str, starts))}}};",
        f"static const unsigned {p}_written[] = {{{', '.join(map(str, written)) or '0'}}};",
    ]) + "\n"


_STATE = """typedef struct {p}_state {p}_state;
struct {p}_state {{
    pbcl_api api;
    pbcl_context context;
    pbcl_queue queue;
    pbcl_program program;
    pbcl_mem arena;
    pbcl_mem buffers[{n_buf}]; /* inputs, outputs, temporaries (sub-buffers of arena) */
    pbcl_kernel kernels[{n_k}]; /* one per launch, arguments set */
    int from_disk;
    int ready;
}};

static PBCL_MAYBE_UNUSED size_t {p}_state_bytes(void) {{ return sizeof({p}_state); }}

static PBCL_MAYBE_UNUSED const char *{p}_build_origin(const {p}_state *s) {{
    return !s->ready ? "none" : s->from_disk ? "disk" : "source";
}}

static PBCL_MAYBE_UNUSED void {p}_release({p}_state *s) {{
    size_t i;
    if (s == NULL) return;
    if (s->api.handle != NULL) {{
        if (s->queue != NULL) s->api.Finish(s->queue);
        for (i = 0; i < sizeof s->kernels / sizeof s->kernels[0]; ++i)
            if (s->kernels[i] != NULL) s->api.ReleaseKernel(s->kernels[i]);
        for (i = sizeof s->buffers / sizeof s->buffers[0]; i-- > 0;)
            if (s->buffers[i] != NULL) s->api.ReleaseMemObject(s->buffers[i]);
        if (s->arena != NULL) s->api.ReleaseMemObject(s->arena);
        if (s->program != NULL) s->api.ReleaseProgram(s->program);
        if (s->queue != NULL) s->api.ReleaseCommandQueue(s->queue);
        if (s->context != NULL) s->api.ReleaseContext(s->context);
        pbcl_unload(&s->api);
    }}
    memset(s, 0, sizeof *s);
}}
"""

_INIT = """static PBCL_MAYBE_UNUSED int {p}_init({p}_state *s, const char *cache_dir, char *err,
                                     size_t err_len) {{
    static const size_t local[3] = {{{local}}};
    const char *name = {name};
    pbcl_platform platform = NULL;
    pbcl_device device = NULL;
    pbcl_int rc = PBCL_SUCCESS;
    pbcl_region region;
    const char *what = "";
    size_t i;
    unsigned j;
    int code;
    memset(s, 0, sizeof *s);
    pbcl_isolate_pocl();
    code = pbcl_load(&s->api, err, err_len);
    if (code != 0) return code;
    code = pbcl_select_device(&s->api, &platform, &device, err, err_len);
    if (code == 0)
        code = pbcl_check_device(&s->api, device, name, {fp64}, {group}u, local, {align}u,
                                 err, err_len);
    if (code != 0) goto failed;
    what = "clCreateContext";
    s->context = s->api.CreateContext(NULL, 1, &device, NULL, NULL, &rc);
    if (s->context == NULL || rc != PBCL_SUCCESS) goto cl_failed;
    what = "clCreateCommandQueue";
    s->queue = s->api.CreateCommandQueue(s->context, device, 0, &rc);
    if (s->queue == NULL || rc != PBCL_SUCCESS) goto cl_failed;
    code = pbcl_build(&s->api, s->context, platform, device, "{p}", {p}_source, "", cache_dir,
                      s, &s->program, &s->from_disk, err, err_len);
    if (code != 0) goto failed;
    what = "clCreateBuffer";
    for (i = 0; i < {p}_n_inputs + {p}_n_outputs; ++i) {{
        s->buffers[i] = s->api.CreateBuffer(s->context, PBCL_MEM_READ_WRITE,
                                            {p}_io_bytes[i] ? {p}_io_bytes[i] : 1, NULL, &rc);
        if (s->buffers[i] == NULL || rc != PBCL_SUCCESS) goto cl_failed;
    }}
    s->arena = s->api.CreateBuffer(s->context, PBCL_MEM_READ_WRITE, {arena}u, NULL, &rc);
    if (s->arena == NULL || rc != PBCL_SUCCESS) goto cl_failed;
    what = "clCreateSubBuffer";
    for (i = 0; i < {p}_n_temps; ++i) {{
        pbcl_mem *temp = &s->buffers[{p}_n_inputs + {p}_n_outputs + i];
        region.origin = {p}_temp_offsets[i];
        region.size = {p}_temp_bytes[i] ? {p}_temp_bytes[i] : 1;
        *temp = s->api.CreateSubBuffer(s->arena, 0, PBCL_BUFFER_CREATE_TYPE_REGION, &region,
                                       &rc);
        if (*temp == NULL || rc != PBCL_SUCCESS) goto cl_failed;
    }}
    for (j = 0; j < {p}_n_launches; ++j) {{
        unsigned a;
        what = "clCreateKernel";
        s->kernels[j] = s->api.CreateKernel(s->program, {p}_kernel_names[j], &rc);
        if (s->kernels[j] == NULL || rc != PBCL_SUCCESS) goto cl_failed;
        what = "clSetKernelArg";
        for (a = {p}_arg_start[j]; a < {p}_arg_start[j + 1]; ++a) {{
            const pbcl_arg *arg = &{p}_args[a];
            rc = arg->buffer >= 0
                     ? s->api.SetKernelArg(s->kernels[j], a - {p}_arg_start[j],
                                           sizeof(pbcl_mem), &s->buffers[arg->buffer])
                     : s->api.SetKernelArg(s->kernels[j], a - {p}_arg_start[j], arg->size,
                                           arg->bytes);
            if (rc != PBCL_SUCCESS) goto cl_failed;
        }}
    }}
    s->ready = 1;
    return 0;
cl_failed:
    code = pbcl_fail(err, err_len, PBCL_E_RUNTIME, "%s: %s failed (%s %d)", name, what,
                     pbcl_error_name(rc), (int)rc);
failed:
    {p}_release(s);
    return code;
}}
"""

_RUN = """static PBCL_MAYBE_UNUSED int {p}_run({p}_state *s, const void *const *inputs,
                                    void *const *outputs, char *err, size_t err_len) {{
    pbcl_int rc = PBCL_SUCCESS;
    const char *what = "";
    size_t i;
    if (s == NULL || !s->ready)
        return pbcl_fail(err, err_len, PBCL_E_USAGE,
                         "%s: the state is not initialised (call {p}_init first, and check "
                         "that it returned 0)", {name});
    for (i = 0; i < {p}_n_inputs + {p}_n_outputs; ++i) {{
        const void *ptr = i < {p}_n_inputs ? (inputs ? inputs[i] : NULL)
                                      : (outputs ? outputs[i - {p}_n_inputs] : NULL);
        if (ptr == NULL && {p}_io_bytes[i] != 0)
            return pbcl_fail(err, err_len, PBCL_E_USAGE, "%s: %s %u is a null pointer",
                             {name}, i < {p}_n_inputs ? "input" : "output",
                             (unsigned)(i < {p}_n_inputs ? i : i - {p}_n_inputs));
    }}
    what = "clEnqueueWriteBuffer";
    for (i = 0; i < {p}_n_inputs; ++i) {{
        if ({p}_io_bytes[i] == 0) continue;
        rc = s->api.EnqueueWriteBuffer(s->queue, s->buffers[i], 0, 0, {p}_io_bytes[i],
                                       inputs[i], 0, NULL, NULL);
        if (rc != PBCL_SUCCESS) goto failed;
    }}
    what = "clEnqueueNDRangeKernel";
    for (i = 0; i < {p}_n_launches; ++i) {{
        rc = s->api.EnqueueNDRangeKernel(s->queue, s->kernels[i], {p}_dims[i], NULL,
                                         {p}_global[i], {p}_local[i], 0, NULL, NULL);
        if (rc != PBCL_SUCCESS) goto failed;
    }}
    what = "clEnqueueReadBuffer";
    for (i = 0; i < {p}_n_outputs; ++i) {{
        if ({p}_io_bytes[{p}_n_inputs + i] == 0) continue;
        rc = s->api.EnqueueReadBuffer(s->queue, s->buffers[{p}_n_inputs + i], 0, 0,
                                      {p}_io_bytes[{p}_n_inputs + i], outputs[i], 0, NULL, NULL);
        if (rc != PBCL_SUCCESS) goto failed;
    }}
    for (i = 0; i < {p}_n_written; ++i) {{
        unsigned k = {p}_written[i];
        if ({p}_io_bytes[k] == 0) continue;
        rc = s->api.EnqueueReadBuffer(s->queue, s->buffers[k], 0, 0, {p}_io_bytes[k],
                                      (void *)(uintptr_t)inputs[k], 0, NULL, NULL);
        if (rc != PBCL_SUCCESS) goto failed;
    }}
    what = "clFinish";
    rc = s->api.Finish(s->queue);
    if (rc == PBCL_SUCCESS) return 0;
failed:
    s->api.Finish(s->queue); /* nothing may still read or write the caller's arrays */
    return pbcl_fail(err, err_len, PBCL_E_RUNTIME, "%s: %s failed (%s %d)", {name}, what,
                     pbcl_error_name(rc), (int)rc);
}}
"""
