"""`OpenCLExecutable`: a compiled function run on an OpenCL device with numpy arrays."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import TensorType

from pullback.compiler import host_calls
from pullback.compiler.backends.kernel_level import InputSpec
from pullback.compiler.backends.opencl.devices import cl
from pullback.compiler.backends.opencl.plan import HostCall, Step
from pullback.compiler.transforms.memory_plan import MemoryPlan, MemoryReport


class OpenCLExecutable:
    """A function compiled to OpenCL C, run by a fixed launch plan.

    Device buffers (inputs, outputs, and one arena of temporaries laid out by the
    static memory plan, as sub-buffers) are allocated once and reused;
    `run(inputs)` copies the inputs in, enqueues every launch on the executable's
    queue and copies the outputs back into fresh numpy arrays; on devices that share
    the host's memory (CPU devices) the kernels read the input arrays and write the
    fresh output arrays in place instead (`USE_HOST_PTR` buffers, no copies). Calls from several
    threads are serialised by a lock held for the whole call (the buffers, the arena and
    the queue are the executable's); each thread gets its own kernel objects, since
    setting kernel arguments is not thread-safe. A call made again from one of its own
    host calls is refused (it would wait for itself). A host call step
    (showgrad, hooks) waits for the queue, reads its buffer back, calls Python and
    writes the gradient it passes on; an exception there (or anywhere in `run`) stops
    the call at once: nothing more is enqueued, and `run` waits for what was enqueued
    before it raises.

    Attributes:
        input_types, output_types: the tensor types of the function.
        device: the `pyopencl.Device` it runs on.
        stages: MLIR text after each lowering stage (only with `keep_ir=True`).
        opencl_source: the whole generated OpenCL C program.
        timings: seconds spent per compile stage.
        build_origin: where the program binary came from: "source", "disk" or "memory".
        plan: where each temporary lives in the arena (offsets aligned for the device).
        memory: the bytes one call uses (`MemoryReport`).
        host_calls: whether a call runs Python functions.
        undo_inputs: the written inputs a failing call may leave partly written (on
            devices sharing the host's memory, where kernels write the arrays directly;
            elsewhere written inputs are copied back only when every step has run).
    """

    def __init__(self, spec: InputSpec, input_types: Sequence[TensorType],
                 output_types: Sequence[TensorType], plan: MemoryPlan, device: Any,
                 context: Any, program: Any, steps: Sequence[Step | HostCall],
                 opencl_source: str,
                 stages: dict[str, str], timings: dict[str, float], build_origin: str):
        ocl = cl()
        self.name = spec.name
        self._spec = spec
        self.input_types = tuple(input_types)
        self.output_types = tuple(output_types)
        self.device = device
        self.opencl_source = opencl_source
        self.stages = stages
        self.timings = timings
        self.build_origin = build_origin
        self._program = program
        self._steps = list(steps)
        sizes = [int(np.prod(s, dtype=np.int64)) * d.itemsize
                 for d, s in (*spec.inputs, *spec.outputs)]
        flags = ocl.mem_flags.READ_WRITE
        self.plan = plan.realigned(max(1, int(device.mem_base_addr_align) // 8))
        self.memory = MemoryReport.of(self.plan, spec.inputs, spec.outputs)
        self._arena = ocl.Buffer(context, flags, size=max(self.plan.arena_bytes, 1))
        self._buffers = [ocl.Buffer(context, flags, size=max(n, 1)) for n in sizes]
        self._buffers += [self._arena.get_sub_region(offset, max(n, 1))
                          for offset, n in zip(self.plan.offsets, self.plan.sizes, strict=True)]
        self._queue = ocl.CommandQueue(context, device)
        self._context = context
        self._zero_copy = bool(getattr(device, "host_unified_memory", False))
        self.host_calls = any(isinstance(step, HostCall) for step in self._steps)
        self.undo_inputs = spec.written if self._zero_copy else ()
        self._local = threading.local()
        self._lock = threading.Lock()

    @property
    def spec(self) -> InputSpec:
        """The dtypes and shapes of the inputs and outputs, and the inputs written in place."""
        return self._spec

    @property
    def steps(self) -> tuple[Step | HostCall, ...]:
        """The launch plan, in order (buffer indices: inputs, outputs, temporaries)."""
        return tuple(self._steps)

    def _kernels(self) -> list[Any]:
        """This thread's kernel objects, one per launch step (None for host calls)."""
        kernels = getattr(self._local, "kernels", None)
        if kernels is None:
            ocl = cl()
            kernels = []
            for step in self._steps:
                if isinstance(step, HostCall):
                    kernels.append(None)
                    continue
                kernel = ocl.Kernel(self._program, step.launch.kernel)
                kernel.set_args(*[self._buffers[a] if isinstance(a, int) else a
                                  for a in step.args])
                kernels.append(kernel)
            self._local.kernels = kernels
        return kernels

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Outputs of the function for C-contiguous `inputs` of the exact dtypes and shapes."""
        self._spec.check(inputs)
        outs = self._spec.new_outputs()
        kernels = self._kernels()
        if getattr(self._local, "running", False):
            raise RuntimeError(
                f"@{self.name} on OpenCL was called again from a host call (a hook or "
                "update function) of its own call; the calls of one OpenCL function run "
                "one at a time, so it would wait for itself: call it after that call, or "
                "use a function compiled for the CPU")
        with self._lock:
            self._local.running = True
            try:
                if self._zero_copy:
                    self._run_in_place(kernels, inputs, outs)
                else:
                    self._run_with_copies(kernels, inputs, outs)
            except BaseException:
                self._queue.finish()  # no launch may still write once the caller restores
                raise
            finally:
                self._local.running = False
        return outs

    def _bind(self, kernels: list[Any], buffers: Sequence[Any]) -> None:
        """Point the kernels' input and output arguments at `buffers` for this call."""
        for kernel, step in zip(kernels, self._steps, strict=True):
            if isinstance(step, HostCall):
                continue
            for position, a in enumerate(step.args):
                if isinstance(a, int) and a < len(buffers):
                    kernel.set_arg(position, buffers[a])

    def _enqueue(self, kernels: list[Any], buffers: Sequence[Any]) -> None:
        """Run the plan; `buffers` are this call's buffers (inputs, outputs, temporaries)."""
        ocl = cl()
        for kernel, step in zip(kernels, self._steps, strict=True):
            if isinstance(step, HostCall):
                self._host_call(step, buffers)
            else:
                ocl.enqueue_nd_range_kernel(self._queue, kernel, step.launch.global_size,
                                            step.launch.local_size)

    def _host_call(self, step: HostCall, buffers: Sequence[Any]) -> None:
        """Read the gradient back, call Python, write what it passes on."""
        ocl, q = cl(), self._queue
        token = np.empty(1, np.int64)
        ocl.enqueue_copy(q, token, buffers[step.table], is_blocking=True)
        value = np.empty(step.n, step.dtype)
        if step.n:
            ocl.enqueue_copy(q, value, buffers[step.src], is_blocking=True)
        out = host_calls.call(int(token[0]), step.slot, step.unreached, value)
        result = value if out is None else np.ascontiguousarray(out, step.dtype)
        if step.n:
            ocl.enqueue_copy(q, buffers[step.dst], result, is_blocking=True)

    def _run_with_copies(self, kernels: list[Any], inputs: Sequence[np.ndarray],
                         outs: list[np.ndarray]) -> None:
        """Device memory apart from the host's: copy in, launch, copy back."""
        ocl, q = cl(), self._queue
        for a, buf in zip(inputs, self._buffers, strict=False):
            if a.nbytes:
                ocl.enqueue_copy(q, buf, a, is_blocking=False)
        self._bind(kernels, self._buffers[:len(inputs) + len(outs)])
        self._enqueue(kernels, self._buffers)
        for o, buf in zip(outs, self._buffers[len(inputs):], strict=False):
            if o.nbytes:
                ocl.enqueue_copy(q, o, buf, is_blocking=False)
        for i in self._spec.written:
            if inputs[i].nbytes:
                ocl.enqueue_copy(q, inputs[i], self._buffers[i], is_blocking=False)
        q.finish()

    def _run_in_place(self, kernels: list[Any], inputs: Sequence[np.ndarray],
                      outs: list[np.ndarray]) -> None:
        """Host-unified memory (CPU devices): the kernels read and write the arrays."""
        ocl, q = cl(), self._queue
        flags = ocl.mem_flags
        written = self._spec.written
        wrapped = [ocl.Buffer(self._context, (flags.READ_WRITE if i in written else
                                              flags.READ_ONLY) | flags.USE_HOST_PTR, hostbuf=a)
                   if a.nbytes else self._buffers[i] for i, a in enumerate(inputs)]
        wrapped += [ocl.Buffer(self._context, flags.READ_WRITE | flags.USE_HOST_PTR, hostbuf=o)
                    if o.nbytes else self._buffers[len(inputs) + j] for j, o in enumerate(outs)]
        self._bind(kernels, wrapped)
        self._enqueue(kernels, [*wrapped, *self._buffers[len(wrapped):]])
        synced = [*((inputs[i], wrapped[i]) for i in written),
                  *zip(outs, wrapped[len(inputs):], strict=True)]
        for o, buf in synced:
            if o.nbytes:
                mapped, _ = ocl.enqueue_map_buffer(q, buf, ocl.map_flags.READ, 0, o.shape,
                                                   o.dtype)
                mapped.base.release(q)
        q.finish()
