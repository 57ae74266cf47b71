"""Compare runs from MLflow: `load_comparison` reads an experiment's runs (`gcpo.tracking.reading`) into a
`Comparison` of arms; the report is written by `gcpo.sweeps.report`, its tables by `gcpo.sweeps.tables`, its plots
by `gcpo.sweeps.plots`, its statistics by `gcpo.sweeps.stats`. This module is the entry point the commands,
benchmarks and notebook import: it re-exports the report's names.

`load_comparison(experiment, uri)` reads every training run of an experiment (a sweep's parent runs excluded),
or only the children of `parent_run_id`, and groups them into arms by the swept keys: the `gcpo.swept_keys` tag
of the experiment's sweep parents, else the params whose values differ between runs (seeds excepted). An arm's
value of a key is the run's param (every config leaf is one), so plain `gcpo train` runs compare as well. The
metric is the sweep's `gcpo.metric`, else the first `eval/*/pass_at_1`. Every metric a run logged is read in full
(`curves.csv`); each run's final held-out evaluation's per-item results (the artifact `eval/items_step_<N>.json`,
`gcpo.evaluation`) go to `items.csv`, from which `gcpo.sweeps.stats` draws the intervals over seeds and items.
"""

from __future__ import annotations

import pandas as pd

from gcpo.sweeps.arms import (CURVE_COLUMNS, Comparison, Statistics, default_metric, differing_params,
                              items_frame, parse_param, run_row, summarize_arms)
from gcpo.sweeps.plots import (plot_arm_intervals, plot_differences, plot_effects, plot_intervals,
                               plot_learning_curves)
from gcpo.sweeps.report import REPORT_FILES, REPORT_META, load_reports, write_report
from gcpo.sweeps.tables import format_table, markdown_table

__all__ = ["Comparison", "Statistics", "REPORT_FILES", "REPORT_META", "format_table", "load_comparison",
           "load_reports", "markdown_table", "plot_arm_intervals", "plot_differences", "plot_effects",
           "plot_intervals", "plot_learning_curves", "summarize_arms", "write_report"]


def _sweep_settings(parents: list, runs: list) -> tuple[list[str], str | None, str]:
    """The swept keys, the metric and its mode from the sweep parents' tags (keys: else the differing params)."""
    from gcpo.tracking import tags

    swept = [k for p in parents for k in p.data.tags.get(tags.SWEPT_KEYS, "").split(",") if k]
    keys = list(dict.fromkeys(swept)) or differing_params(runs)
    metric = next((p.data.tags[tags.METRIC] for p in parents if tags.METRIC in p.data.tags), None)
    mode = next((p.data.tags[tags.MODE] for p in parents if tags.MODE in p.data.tags), "max")
    return keys, metric, mode


def load_comparison(experiment: str, tracking_uri: str, *, parent_run_id: str | None = None,
                    metric: str | None = None, target: float | None = None) -> Comparison:
    """Read the runs of `experiment` (or the children of `parent_run_id`) and build the comparison."""
    from gcpo.sweeps.runner import arm_label
    from gcpo.tracking import reading

    mlflow = reading.client(tracking_uri)
    runs, parents = reading.select_runs(mlflow, experiment, tracking_uri, parent_run_id)
    keys, sweep_metric, mode = _sweep_settings(parents, runs)
    metric = metric or sweep_metric or default_metric(runs)
    rows, curve_rows, items = [], [], []
    for read in reading.read_runs(mlflow, runs, tracking_uri):
        params = {k: parse_param(reading.swept_value(read.run, k)) for k in keys}
        ident = {"run_id": read.run.info.run_id, "arm": arm_label(params, keys) or "all",
                 "seed": read.run.data.params.get("trainer.seed", "")}
        rows.append(run_row(read.run, ident, params, read.histories, metric, mode, target))
        curve_rows += [{**ident, "key": key, "step": step, "value": value}
                       for key, history in read.histories.items() for step, value in history]
        if read.items is not None:
            items.append(read.items.assign(**ident))
    runs_df = pd.DataFrame(rows).sort_values(["arm", "seed"]).reset_index(drop=True)
    return Comparison(experiment, tracking_uri, metric, mode, keys, target, runs_df, summarize_arms(runs_df),
                      pd.DataFrame(curve_rows, columns=CURVE_COLUMNS),
                      parent_run_id or (parents[0].info.run_id if len(parents) == 1 else None),
                      items=items_frame(items))
