"""Ray runtime and (later) job submission: `init_ray` starts or joins Ray with safe defaults."""

from gcpo.cluster.runtime import ClusterError, init_ray

__all__ = ["ClusterError", "init_ray"]
