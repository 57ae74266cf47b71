"""One module per `gcpo` subcommand: `add_arguments(parser)` and `run(args) -> exit code`.

`COMMANDS` is the table of subcommands and `build_parser()` the `gcpo` argument parser built from it: the command
line (`gcpo.cli`) parses with it, and `gcpo.cluster.jobs` checks a command submitted as a job with it.
"""

from __future__ import annotations

import argparse
import importlib

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("gcpo.commands.train_cmd", "train a policy (default: SmolLM2-135M, gcpo preset, easy arithmetic)"),
    "config": ("gcpo.commands.config_cmd", "show the resolved config, the valid keys, or the presets"),
    "eval": ("gcpo.commands.eval_cmd", "measure a model on held-out tasks: pass@1, mean@k, format rate, length"),
    "export": ("gcpo.commands.export_cmd", "write a run's checkpoint as a Hugging Face model folder (model.name=DIR)"),
    "warmstart": ("gcpo.commands.warmstart_cmd", "SFT on a disjoint split's golden answers, saved and probed: a start "
                  "with mixed groups"),
    "sweep": ("gcpo.commands.sweep_cmd", "run a search space (grid, Optuna, ASHA) with Ray Tune, every trial in MLflow"),
    "compare": ("gcpo.commands.compare_cmd", "compare a sweep's arms from MLflow: table, learning curves, effects, CSV"),
    "study": ("gcpo.commands.study_cmd", "an ablation study of named claims: plan its seeds, run it in resumable "
              "pieces, report verdicts in words"),
    "probe": ("gcpo.commands.probe_cmd", "does each switch of a search space change the update? gradients on one batch"),
    "cluster": ("gcpo.commands.cluster_cmd", "start, stop or describe a local Ray cluster on loopback for development"),
    "submit": ("gcpo.commands.submit_cmd", "submit a gcpo command (train, sweep, ...) to a Ray cluster as a job"),
    "jobs": ("gcpo.commands.jobs_cmd", "list a cluster's jobs, print or follow a job's logs, stop a job"),
}


def build_parser() -> argparse.ArgumentParser:
    """The `gcpo` parser: one subparser per `COMMANDS` entry, its module's `add_arguments` filling it in."""
    parser = argparse.ArgumentParser(
        prog="gcpo",
        description="GCPO-style RL on language models: train, evaluate, sweep and compare (Ray, DeepSpeed, "
        "vLLM, Tune, MLflow).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser
