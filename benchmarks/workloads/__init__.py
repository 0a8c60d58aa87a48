"""The benchmark workloads, by name."""

from benchmarks.workload import Workload
from benchmarks.workloads import chain, gmm, mlp

WORKLOADS: dict[str, Workload] = {w.name: w for w in (chain.WORKLOAD, mlp.WORKLOAD, gmm.WORKLOAD)}
