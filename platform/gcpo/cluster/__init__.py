"""Ray clusters: starting or joining Ray (`runtime.init_ray`, with a token cluster's token), the local development
cluster (`local`, its record `record`) and job submission (`jobs`: `gcpo submit`, `gcpo jobs`)."""

from gcpo.cluster.runtime import ClusterError, init_ray

__all__ = ["ClusterError", "init_ray"]
