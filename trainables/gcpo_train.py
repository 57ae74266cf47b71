"""The training trainable: one run of `gcpo.training.fit` (a Ray Train `TorchTrainer`), as Ray Tune and scripts
call it. The library holds the code; this module only names it."""

from gcpo.training.fit import TrainOutcome, fit, load_run_config

__all__ = ["TrainOutcome", "fit", "load_run_config"]
