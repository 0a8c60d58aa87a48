"""The benchmark workloads, by name."""

from benchmarks.workload import Workload
from benchmarks.workloads import chain, gmm, hessian, jacobian, lstm, mlp, train

WORKLOADS: dict[str, Workload] = {
    w.name: w for w in (chain.WORKLOAD, mlp.WORKLOAD, gmm.WORKLOAD, lstm.WORKLOAD)}

DERIVATIVES: dict[str, Workload] = {w.name: w for w in (jacobian.WORKLOAD, hessian.WORKLOAD)}
"""Workloads timing a Jacobian or a Hessian instead of a gradient."""

TRAINING: dict[str, Workload] = {train.WORKLOAD.name: train.WORKLOAD}
"""Workloads timing one optimiser step (gradient + update in place) per call."""

ALL: dict[str, Workload] = {**WORKLOADS, **DERIVATIVES, **TRAINING}
