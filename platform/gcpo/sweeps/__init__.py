"""Sweeps and ablations: search-space files, Ray Tune (+ Optuna, ASHA) over the training trainable, MLflow
parent/child runs, and the comparison report."""

from gcpo.sweeps.space import SearchSpace, SpaceError, Spec, load_space, trial_config

__all__ = ["SearchSpace", "SpaceError", "Spec", "load_space", "trial_config"]
