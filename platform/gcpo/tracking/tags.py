"""The MLflow tag names `gcpo` writes and reads: every tag is named here, once.

Our own tags start with `gcpo.`; the `mlflow.` ones are MLflow's reserved tags, which its UI reads (the parent run
that nests a sweep's trials, a run's description, an experiment's kind).
"""

PRESET = "gcpo.preset"  # the run's preset (`preset`)
RUN_NAME = "gcpo.run_name"  # the training run's name (its folder under `runs/`)
KIND = "gcpo.kind"  # what a run is when it is not a training run (`eval`: a `gcpo eval` run)
RESUME_COUNT = "gcpo.resume_count"  # how many times the run resumed from a checkpoint

SWEEP = "gcpo.sweep"  # the sweep a run belongs to (the parent and every trial)
SWEEP_PARENT = "gcpo.sweep_parent"  # "true" on a sweep's parent run
SWEPT_KEYS = "gcpo.swept_keys"  # the parent's swept keys, comma-separated
METRIC = "gcpo.metric"  # the parent's sweep metric
MODE = "gcpo.mode"  # the parent's mode (max or min)
TRIAL_KEY = "gcpo.trial_key"  # `<sweep>/<trial id>`: finds a retried trial's run
ARM = "gcpo.arm"  # the trial's arm label (`base` when nothing is swept)
SEED = "gcpo.seed"  # the trial's `trainer.seed`
SWEPT_PREFIX = "gcpo.swept."  # + a swept key: the value the trial ran with (a named arm's name for `arm`)
CHECKPOINT = "gcpo.checkpoint"  # the trial's kept checkpoint, or `removed`
STOPPED_EARLY = "gcpo.stopped_early"  # a trial a scheduler stopped ("true") or that failed ("false")

PARENT_RUN = "mlflow.parentRunId"  # MLflow's nesting of runs
NOTE = "mlflow.note.content"  # MLflow's run description
EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow 3's experiment type: its UI opens an experiment by it
TRAINING_EXPERIMENT = "custom_model_development"  # the kind of a model-training experiment ("Training runs")


def resumed_from_step(count: int) -> str:
    """The tag recording the step the `count`-th resume continued from."""
    return f"gcpo.resume_{count}_from_step"


def swept(key: str) -> str:
    """The tag holding the value of swept key `key` a trial ran with."""
    return SWEPT_PREFIX + key
