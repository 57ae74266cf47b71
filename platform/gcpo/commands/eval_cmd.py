"""`gcpo eval [--tasks a,b,c] [--json FILE] [--items FILE] [--no-mlflow] [--config YAML] [--preset NAME]
[KEY=VALUE ...]`.

Measures the configured model (`model.name`) on held-out splits with the configured rollout backend
(`rollout.backend`): pass@1 (greedy) and mean@k (k = `trainer.eval_k`) on the first `task.eval_size` items of
each task, plus format rate and response length (`gcpo.evaluation`). Prints a table; logs the metrics, every
config leaf as a param, and `eval.csv` to MLflow (`tracking.uri`, `tracking.experiment`); `--json` also writes
the rows, metrics, command, date and timing to a file, `--items` each item's result (task, index, id, greedy
correctness, mean@k, format; `gcpo.evaluation.ItemResult`) as a JSON table. Sizes are ordinary overrides, e.g.
`gcpo eval --tasks basic_arithmetic,gsm_symbolic task.eval_size=50 trainer.eval_k=4 rollout.backend=transformers`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import time
from pathlib import Path

from gcpo.commands.common import add_config_arguments, config_from_args
from gcpo.console import add_verbose_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--tasks", metavar="A,B,C",
                        help="comma-separated tasks to evaluate: built-in names, 'jsonl' (task.path's held-out "
                             "split) or paths to .jsonl files (their first task.eval_size rows); default: "
                             "task.name")
    parser.add_argument("--json", metavar="FILE", help="also write the results (rows, metrics, timing) as JSON")
    parser.add_argument("--items", metavar="FILE", help="also write each item's result (task, index, id, greedy "
                                                        "correctness, mean@k, format) as a JSON table")
    parser.add_argument("--no-mlflow", action="store_true", help="print only; log nothing to MLflow")
    add_verbose_argument(parser)


def command_line(args: argparse.Namespace) -> str:
    """The `gcpo eval` command that reproduces `args`."""
    parts = ["gcpo", "eval"]
    for flag, value in (("--config", args.config), ("--preset", args.preset), ("--tasks", args.tasks),
                        ("--json", args.json), ("--items", args.items)):
        if value:
            parts += [flag, value]
    if args.no_mlflow:
        parts.append("--no-mlflow")
    return shlex.join(parts + list(args.overrides))


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def run(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from gcpo.evaluation import evaluate_config
    from gcpo.models import resolve_model
    from gcpo.preflight import check_eval_tasks
    from gcpo.rollout import build_engine
    from gcpo.standalone.warmstart import ensure_builtin_warm_start
    from gcpo.tasks import VerifierPool, held_out_tasks

    cfg = config_from_args(args)
    names = [n.strip() for n in args.tasks.split(",") if n.strip()] if args.tasks else None
    started = time.monotonic()
    tasks = held_out_tasks(cfg.task, names)
    ensure_builtin_warm_start(cfg.model)  # smollm2-warmstart: made on first use, said
    model_dir = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tasks = check_eval_tasks(cfg, tasks, tokenizer, model_dir)  # sizes and lengths, before any engine starts
    print(f"[gcpo eval] model {cfg.model.name} ({model_dir}), backend {cfg.rollout.backend}, "
          f"tasks {', '.join(t.name for t in tasks)}, eval_size {cfg.task.eval_size}, k {cfg.trainer.eval_k}, "
          f"max_new_tokens {cfg.rollout.max_new_tokens}", flush=True)
    if cfg.rollout.backend == "vllm":  # its generators are Ray actors: start Ray as `gcpo train` does (quiet)
        from gcpo.cluster.runtime import init_ray

        init_ray(cfg.cluster.address, num_cpus=cfg.cluster.num_cpus)
    engine = build_engine(cfg.rollout, model_dir, model_dtype=cfg.model.dtype)
    try:
        with VerifierPool.from_config(cfg.task) as pool:
            result = evaluate_config(engine, tokenizer, cfg, tasks=tasks, pool=pool)
    finally:
        engine.shutdown()
    seconds = time.monotonic() - started
    print(result.table())
    print(f"[gcpo eval] {seconds:.0f}s in all", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(_record(args, cfg, result, seconds), indent=2) + "\n")
    if args.items:
        Path(args.items).write_text(result.items_json())
    if not args.no_mlflow:
        _log_to_mlflow(cfg, result)
    return 0


def _record(args: argparse.Namespace, cfg, result, seconds: float) -> dict:
    """What `--json` writes: the command, the machine, the settings, the table's rows and the metrics."""
    return {
        "command": command_line(args),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()}-core {platform.machine()} {platform.system()}, no GPU"
        if not _has_gpu() else f"{os.cpu_count()}-core {platform.machine()} {platform.system()} with GPU",
        "model": cfg.model.name,
        "backend": cfg.rollout.backend, "eval_size": cfg.task.eval_size, "k": cfg.trainer.eval_k,
        "max_new_tokens": cfg.rollout.max_new_tokens, "seconds": round(seconds, 1),
        "rows": result.rows(), "metrics": result.metrics(),
    }


def _log_to_mlflow(cfg, result) -> None:
    """The evaluation as an MLflow run (`gcpo.kind` eval): every config leaf a param, the metrics, `eval.csv`."""
    from gcpo.config import loggable, to_flat_dict
    from gcpo.tracking import tags
    from gcpo.tracking.training_run import TrainingRunLogger, absolute_tracking_uri

    uri = absolute_tracking_uri(cfg.tracking.uri, Path.cwd())
    logger = TrainingRunLogger(uri, cfg.tracking.experiment,
                               run_name=cfg.tracking.run_name or f"eval-{Path(cfg.model.name).name}",
                               params=to_flat_dict(loggable(cfg)), tags={tags.KIND: "eval"})
    logger.log_metrics(result.metrics(), step=0)
    logger.log_text(result.csv(), "eval.csv")
    logger.finish()
    print(f"[gcpo eval] logged to MLflow run {logger.run_id} ({uri}, experiment {cfg.tracking.experiment})")
