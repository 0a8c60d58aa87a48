"""`train`: one Adam training step of the `mlp` workload's model per call.

The model, data and loss are `mlp`'s (3-layer tanh MLP, batch 256, 784-256-256-10,
float32, softmax cross-entropy). A call takes the loss gradient and applies
`pb.optimisers.Adam(1e-3)` (betas (0.9, 0.999), eps 1e-8, bias-corrected) to every
weight and bias in place. pullback compiles the whole step into one native call;
its `[eager]` form updates each layer inside the backward pass (`pb.eager_update`).

Tolerance: Adam's first step moves a weight by lr·g/(|g| + eps), so a weight whose
gradient lies within float32 rounding of zero moves by a rounding-dependent fraction
of lr. Against a float64 run, each float32 system differs by up to about 7e-5 of an
array's largest entry, in a handful of the 269,322 weights; the difference is set at
the first step and does not grow with more steps.
"""

from __future__ import annotations

import pullback as pb
from benchmarks.workload import Workload
from benchmarks.workloads import mlp

ADAM = pb.optimisers.Adam(1e-3, betas=(0.9, 0.999), eps=1e-8)


def eager_objective(state, params, x, labels):
    """The MLP loss with each layer's weight and bias updated by `pb.eager_update` as
    soon as the backward pass has completed their gradients."""
    (layer_state,) = state
    updated = {}
    for name in mlp.LAYERS:
        keys = ("w" + name, "b" + name)
        layer = {key: params[key] for key in keys}
        updated |= pb.eager_update(
            {key: layer_state[key] for key in keys}, layer, pb.optimisers.update
        )
    return mlp.objective(updated, x, labels)


WORKLOAD = Workload(
    name="train",
    summary="one Adam step (gradient + update in place) of the mlp workload's model",
    setup=mlp.setup,
    small=mlp.WORKLOAD.small,
    objective=mlp.objective,
    numpy_objective=mlp.numpy_objective,
    numpy_gradient=mlp.numpy_gradient,
    jax_objective=mlp.jax_objective,
    rtol=2e-4,
    transform="train",
    optimiser=ADAM,
    eager_objective=eager_objective,
)
