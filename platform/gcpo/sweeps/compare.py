"""Compare runs from MLflow: a table per arm (mean and std over seeds, 95% bootstrap intervals, paired
differences between arms), learning curves, effect and interval plots, CSV.

`load_comparison(experiment, uri)` reads every training run of an experiment (a sweep's parent runs excluded),
or only the children of `parent_run_id`, and groups them into arms by the swept keys: the `gcpo.swept_keys` tag
of the experiment's sweep parents, else the params whose values differ between runs (seeds excepted). An arm's
value of a key is the run's param (every config leaf is one), so plain `gcpo train` runs compare as well.

Per run: final and best value of the metric (the sweep's `gcpo.metric`, else the first `eval/*/pass_at_1`),
the first step reaching `target`, the final format rate and reward, the mean golden-answer share
(`ga/injected_frac`), mean seconds per step, final response length and entropy. Per arm: mean and std over its
runs (std with ddof=1; 0 for a single run); steps-to-target is the mean over runs that reached it, with the
count that did.

Every metric a run logged is read in full (`curves.csv`: one row per run, key, step); the plot shows a few
(`curves=`, default reward and the compared metric). Each run's final held-out evaluation's per-item results (the
artifact `eval/items_step_<N>.json`, `gcpo.evaluation`) go to `items.csv`; from them `gcpo.sweeps.stats` draws
each arm's 95% interval (a bootstrap over seeds and items; over seeds only for runs without items) and the paired
differences between arms that share seeds and items (`intervals.csv`, `differences.csv`, their plots, the
tables). `Comparison.resamples` (default 2000), `bootstrap_seed` (default 0) and `baseline` (default the table's
first arm; "all": every pair) set them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gcpo.eval_items import ITEM_COLUMNS
from gcpo.sweeps import stats

SEED_KEYS = ("trainer.seed",)
IGNORED_PARAM_PREFIXES = ("tracking.", "cluster.", "trainer.output_dir")
CURVE_KEYS = ("reward/mean",)  # plotted by default, with the compared metric; curves.csv holds every key
CURVE_COLUMNS = ["run_id", "arm", "seed", "key", "step", "value"]
ITEMS_FRAME_COLUMNS = ["run_id", "arm", "seed", "step", *ITEM_COLUMNS]
REPORT_META = "comparison.json"
REPORT_FILES = ("table.txt, table.md, arms.csv, runs.csv, curves.csv, items.csv, intervals.csv, differences.csv, "
                "learning_curves.png, effects.png, intervals.png, differences.png, comparison.json")
READ_THREADS = 8  # runs read at once from a tracking server (a local store reads faster in one thread)


def _items_frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-item results of several runs as one frame (ITEMS_FRAME_COLUMNS; empty without any)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=ITEMS_FRAME_COLUMNS)
    out = pd.concat(frames, ignore_index=True)[ITEMS_FRAME_COLUMNS]
    return out.astype({"arm": str, "seed": str, "task": str, "item_id": str})


@dataclass(frozen=True)
class Statistics:
    """The bootstrap results of a comparison: per arm (`intervals`), per pair (`differences`), and notes."""

    intervals: pd.DataFrame
    differences: pd.DataFrame
    notes: list[str]


@dataclass
class Comparison:
    experiment: str
    tracking_uri: str
    metric: str
    mode: str
    keys: list[str]
    target: float | None
    runs: pd.DataFrame  # one row per run
    arms: pd.DataFrame  # one row per arm
    curves: pd.DataFrame  # columns: run_id, arm, seed, key, step, value
    parent_run_id: str | None = None
    notes: list[str] = field(default_factory=list)
    items: pd.DataFrame = field(default_factory=lambda: _items_frame([]))  # per run, its final evaluation's items
    resamples: int = stats.RESAMPLES
    bootstrap_seed: int = stats.SEED
    baseline: str | None = None  # None: the table's first arm; "all": every pair
    _statistics: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def statistics(self) -> Statistics:
        """Each arm's 95% interval and the paired differences (`gcpo.sweeps.stats`), computed once per setting."""
        settings = (self.resamples, self.bootstrap_seed, self.baseline)
        if self._statistics is None or self._statistics[0] != settings:
            arms = list(self.arms["arm"])
            options = {"resamples": self.resamples, "seed": self.bootstrap_seed}
            intervals, notes = stats.arm_intervals(self.runs, self.items, self.metric, **options)
            differences, more = stats.paired_differences(self.runs, self.items, self.metric,
                                                         stats.arm_pairs(arms, self.baseline), **options)
            intervals = intervals.set_index("arm").reindex(arms).reset_index()
            self._statistics = (settings, Statistics(intervals, differences, notes + more))
        return self._statistics[1]


def load_reports(dirs: list[str | Path], *, name: str | None = None) -> Comparison:
    """Merge reports written by `write_report` (a study run in pieces, over several sittings or machines) into one
    comparison: runs, curve points and per-item results (where a report has them) concatenated, arms summarized
    again. Every report must compare the same
    metric in the same mode; an (arm, seed) found in two reports, or a folder without a report, fails naming it."""
    if not dirs:
        raise ValueError("no reports to merge")
    metas, runs, curves, items, seen = [], [], [], [], {}
    for folder in map(Path, dirs):
        if not (folder / REPORT_META).exists():
            raise ValueError(f"{folder} holds no report ({REPORT_META} missing; write it with gcpo compare --out)")
        meta = json.loads((folder / REPORT_META).read_text())
        if metas and (meta["metric"], meta["mode"]) != (metas[0]["metric"], metas[0]["mode"]):
            raise ValueError(f"{folder} compares {meta['metric']} ({meta['mode']}), {dirs[0]} compares "
                             f"{metas[0]['metric']} ({metas[0]['mode']}): reports of one metric only")
        frame = pd.read_csv(folder / "runs.csv", dtype={"arm": str, "seed": str})
        for arm, seed in zip(frame["arm"], frame["seed"]):
            if (arm, seed) in seen:
                raise ValueError(f"arm {arm!r} seed {seed} is in both {seen[arm, seed]} and {folder}")
            seen[arm, seed] = folder
        metas.append(meta)
        runs.append(frame)
        # fixed dtypes: a report whose runs logged no curve point has a header-only curves.csv
        curves.append(pd.read_csv(folder / "curves.csv", dtype={"arm": str, "seed": str, "key": str,
                                                                 "step": "int64", "value": "float64"}))
        if (folder / "items.csv").exists():  # reports written before per-item results have none
            items.append(pd.read_csv(folder / "items.csv", dtype={"arm": str, "seed": str, "task": str,
                                                                  "item_id": str}))
    keys = list(dict.fromkeys(k for m in metas for k in m["keys"]))
    runs_df = pd.concat(runs, ignore_index=True).sort_values(["arm", "seed"]).reset_index(drop=True)
    experiment = name or ", ".join(dict.fromkeys(m["experiment"] for m in metas))
    return Comparison(experiment, "", metas[0]["metric"], metas[0]["mode"], keys, metas[0]["target"], runs_df,
                      summarize_arms(runs_df), pd.concat(curves, ignore_index=True),
                      notes=[f"merged from {len(dirs)} reports"], items=_items_frame(items))


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _default_metric(runs) -> str:
    for run in runs:
        for key in sorted(run.data.metrics):
            if key.startswith("eval/") and key.endswith("/pass_at_1"):
                return key
    return "reward/accuracy"


def _differing_params(runs) -> list[str]:
    keys = set().union(*(r.data.params for r in runs)) if runs else set()
    out = []
    for key in sorted(keys):
        if key in SEED_KEYS or key.startswith(IGNORED_PARAM_PREFIXES):
            continue
        if len({r.data.params.get(key) for r in runs}) > 1:
            out.append(key)
    return out


def _select_runs(client, experiment: str, tracking_uri: str, parent_run_id: str | None) -> tuple[list, list]:
    """The training runs to compare and the sweep parents above them."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise ValueError(f"no MLflow experiment named {experiment!r} at {tracking_uri}; found: {', '.join(names)}")
    every = client.search_runs([exp.experiment_id], max_results=10000)
    parents = [r for r in every if r.data.tags.get("gcpo.sweep_parent") == "true"]
    if parent_run_id:
        parents = [r for r in parents if r.info.run_id == parent_run_id]
        runs = [r for r in every if r.data.tags.get("mlflow.parentRunId") == parent_run_id]
    else:
        runs = [r for r in every if r.data.tags.get("gcpo.sweep_parent") != "true"]
    if not runs:
        raise ValueError(f"experiment {experiment!r} has no training runs"
                         + (f" under parent run {parent_run_id}" if parent_run_id else ""))
    return runs, parents


def _final_items(client, run_id: str, histories: dict[str, list]) -> pd.DataFrame | None:
    """The per-item results of the run's last held-out evaluation (the artifact `eval/items_step_<N>.json` at the
    last step of its `eval/*` metrics), None when it logged none (a run from before they were recorded)."""
    from gcpo.eval_items import items_artifact

    steps = [history[-1][0] for key, history in histories.items() if key.startswith("eval/") and history]
    if not steps:
        return None
    path = items_artifact(max(steps))
    if path not in {a.path for a in client.list_artifacts(run_id, "eval")}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        table = json.loads(Path(client.download_artifacts(run_id, path, tmp)).read_text())
    return pd.DataFrame(table["data"], columns=table["columns"]).assign(step=max(steps))


@contextlib.contextmanager
def _no_progress_bars():
    """MLflow draws a progress bar for every artifact it downloads: none for the items' small files."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _read_run(client, run) -> tuple[dict[str, list], pd.DataFrame | None]:
    """Every metric's full history (every key the run logged) and its final per-item results."""
    histories = {key: _history(client, run.info.run_id, key) for key in sorted(run.data.metrics)}
    return histories, _final_items(client, run.info.run_id, histories)


def _run_row(run, ident: dict, params: dict, histories: dict[str, list], metric: str, mode: str,
             target: float | None) -> dict:
    """One run's row of runs.csv (see the module docstring)."""
    values = histories.get(metric, [])
    best_fn = max if mode == "max" else min
    reached = [s for s, v in values if target is not None and (v >= target if mode == "max" else v <= target)]
    format_key = metric.rsplit("/", 1)[0] + "/format_rate" if metric.startswith("eval/") else None
    return {"arm": ident["arm"], "seed": ident["seed"], "run_id": ident["run_id"], "run_name": run.info.run_name,
            "status": run.info.status, **params,
            "final": _last(values), "best": best_fn(v for _, v in values) if values else math.nan,
            "steps_to_target": reached[0] if reached else math.nan,
            "format": _last(histories.get(format_key, [])), "reward": _last(histories.get("reward/mean", [])),
            "golden_share": _mean(histories.get("ga/injected_frac", [])),
            "step_s": _mean(histories.get("time/step_s", [])),
            "length": _last(histories.get("response/length_mean", [])),
            "entropy": _last(histories.get("policy/entropy", []))}


def load_comparison(experiment: str, tracking_uri: str, *, parent_run_id: str | None = None,
                    metric: str | None = None, target: float | None = None) -> Comparison:
    """Read the runs of `experiment` (or the children of `parent_run_id`) and build the comparison: from a tracking
    server, the runs' histories and items are read `READ_THREADS` runs at a time."""
    from mlflow.tracking import MlflowClient

    from gcpo.sweeps.runner import arm_label

    client = MlflowClient(tracking_uri=tracking_uri)
    runs, parents = _select_runs(client, experiment, tracking_uri, parent_run_id)
    swept = [k for p in parents for k in p.data.tags.get("gcpo.swept_keys", "").split(",") if k]
    keys = list(dict.fromkeys(swept)) or _differing_params(runs)
    metric = metric or next((p.data.tags["gcpo.metric"] for p in parents if "gcpo.metric" in p.data.tags), None) \
        or _default_metric(runs)
    mode = next((p.data.tags["gcpo.mode"] for p in parents if "gcpo.mode" in p.data.tags), "max")
    threads = READ_THREADS if tracking_uri.startswith(("http://", "https://")) else 1
    with _no_progress_bars(), ThreadPoolExecutor(threads) as pool:
        reads = list(pool.map(lambda run: _read_run(client, run), runs))
    rows, curve_rows, items = [], [], []
    for run, (histories, run_items) in zip(runs, reads):
        # a named arm (`arms:` in the space) is not a config leaf: its name is the run's gcpo.swept.arm tag
        params = {k: _parse(run.data.params.get(k, run.data.tags.get(f"gcpo.swept.{k}"))) for k in keys}
        ident = {"run_id": run.info.run_id, "arm": arm_label(params, keys) or "all",
                 "seed": run.data.params.get("trainer.seed", "")}
        rows.append(_run_row(run, ident, params, histories, metric, mode, target))
        curve_rows += [{**ident, "key": key, "step": step, "value": value}
                       for key, history in histories.items() for step, value in history]
        if run_items is not None:
            items.append(run_items.assign(**ident))
    runs_df = pd.DataFrame(rows).sort_values(["arm", "seed"]).reset_index(drop=True)
    return Comparison(experiment, tracking_uri, metric, mode, keys, target, runs_df, summarize_arms(runs_df),
                      pd.DataFrame(curve_rows, columns=CURVE_COLUMNS),
                      parent_run_id or (parents[0].info.run_id if len(parents) == 1 else None),
                      items=_items_frame(items))


def _parse(text: str | None):
    """An MLflow param (a string) back to bool / number where it is one, for sorting and plotting."""
    if text is None:
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _last(history: list[tuple[int, float]]) -> float:
    return history[-1][1] if history else math.nan


def _mean(history: list[tuple[int, float]]) -> float:
    return sum(v for _, v in history) / len(history) if history else math.nan


def summarize_arms(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over the runs of each arm (std 0 for one run); steps-to-target over the runs that reached it."""
    out = []
    for arm, group in runs.groupby("arm", sort=False):
        row = {"arm": arm, "runs": len(group)}
        for col in ("final", "best", "format", "reward", "golden_share", "step_s", "length", "entropy"):
            values = group[col].dropna()
            row[f"{col}_mean"] = values.mean() if len(values) else math.nan
            row[f"{col}_std"] = values.std(ddof=1) if len(values) > 1 else 0.0
        reached = group["steps_to_target"].dropna()
        row["steps_to_target"] = reached.mean() if len(reached) else math.nan
        row["reached"] = len(reached)
        out.append(row)
    return pd.DataFrame(out).sort_values("final_mean", ascending=False).reset_index(drop=True)


def _pm(row, col: str, fmt: str = "{:.3f}") -> str:
    """An arm's `col` as mean ± std over its runs ("-" when no run has it)."""
    mean, std = row[f"{col}_mean"], row[f"{col}_std"]
    if math.isnan(mean):
        return "-"
    return fmt.format(mean) + (" ± " + fmt.format(std) if row["runs"] > 1 else "")


def _interval(low: float, high: float, fmt: str = "{:.3f}") -> str:
    return "-" if math.isnan(low) or math.isnan(high) else f"[{fmt.format(low)}, {fmt.format(high)}]"


def _resampled(row) -> str:
    """What an interval resampled: "3 seeds x 30 items" or "3 seeds"."""
    seeds = f"{row['seeds']} seed{'s' if row['seeds'] != 1 else ''}"
    return f"{seeds} x {row['items']} items" if row["method"] == stats.BY_ITEMS else seeds


def _arm_cis(cmp: Comparison) -> dict[str, str]:
    intervals = cmp.statistics().intervals
    return {row["arm"]: _interval(row["low"], row["high"]) for _, row in intervals.iterrows()}


def bootstrap_line(cmp: Comparison) -> str:
    """The method, in one line, under the tables."""
    return (f"95% intervals: percentile bootstrap over seeds, then items ({cmp.resamples} resamples, seed "
            f"{cmp.bootstrap_seed}; gcpo.sweeps.stats)")


def format_table(cmp: Comparison) -> str:
    """The terminal table: one line per arm, best final metric first, with its 95% interval; then the paired
    differences, the bootstrap's method and the notes."""
    width = max([len("arm")] + [len(a) for a in cmp.arms["arm"]])
    target = f"steps→{cmp.target:g}" if cmp.target is not None else "steps→target"
    head = (f"{'arm':<{width}}  {'runs':>4}  {'final ' + cmp.metric.rsplit('/', 1)[-1]:>18}  {'95% CI':>16}  "
            f"{'best':>15}  {target:>12}  {'format':>15}  {'golden share':>13}  {'s/step':>8}")
    lines = [f"experiment {cmp.experiment!r}, metric {cmp.metric} ({cmp.mode}), arms by: {', '.join(cmp.keys) or '-'}",
             head, "-" * len(head)]
    cis = _arm_cis(cmp)
    for _, row in cmp.arms.iterrows():
        steps = "-" if math.isnan(row["steps_to_target"]) else f"{row['steps_to_target']:.0f} ({row['reached']}/{row['runs']})"
        lines.append(f"{row['arm']:<{width}}  {row['runs']:>4}  {_pm(row, 'final'):>18}  {cis[row['arm']]:>16}  "
                     f"{_pm(row, 'best'):>15}  {steps:>12}  {_pm(row, 'format'):>15}  "
                     f"{_pm(row, 'golden_share', '{:.2f}'):>13}  {_pm(row, 'step_s', '{:.1f}'):>8}")
    return "\n".join(lines + _difference_lines(cmp) + ["", bootstrap_line(cmp)]
                     + [f"note: {note}" for note in cmp.notes + cmp.statistics().notes])


def _difference_lines(cmp: Comparison) -> list[str]:
    """The paired differences under the terminal table (none when no two arms share a seed)."""
    differences = cmp.statistics().differences
    if differences.empty:
        return []
    names = [f"{row['arm']} - {row['baseline']}" for _, row in differences.iterrows()]
    width = max(len(n) for n in names)
    lines = ["", f"paired differences in final {cmp.metric.rsplit('/', 1)[-1]} (arm - baseline, over shared seeds "
                 "and items, 95% CI):"]
    for name, (_, row) in zip(names, differences.iterrows()):
        lines.append(f"  {name:<{width}}  {row['estimate']:+.3f}  {_interval(row['low'], row['high']):>16}  "
                     f"{_resampled(row)}")
    return lines


def markdown_table(cmp: Comparison) -> str:
    """The arms as a Markdown table (mean ± std over seeds, and the final metric's 95% interval): final and best
    metric, held-out format rate, final training response length and entropy, golden-answer share, seconds per
    step; then the paired differences, the method and the notes."""
    name = cmp.metric.rsplit("/", 1)[-1]
    lines = [f"| arm | runs | final {name} | 95% CI | best {name} | format rate | length (tokens) | entropy "
             "| golden share | s/step |", "|---|---|---|---|---|---|---|---|---|---|"]
    cis = _arm_cis(cmp)
    for _, row in cmp.arms.iterrows():
        lines.append(f"| {row['arm']} | {row['runs']} | {_pm(row, 'final')} | {cis[row['arm']]} | {_pm(row, 'best')} "
                     f"| {_pm(row, 'format')} | {_pm(row, 'length', '{:.1f}')} | {_pm(row, 'entropy', '{:.2f}')} "
                     f"| {_pm(row, 'golden_share', '{:.2f}')} | {_pm(row, 'step_s', '{:.1f}')} |")
    differences = cmp.statistics().differences
    if len(differences):
        lines += ["", f"| arm - baseline | difference in final {name} | 95% CI | resampled |", "|---|---|---|---|"]
        lines += [f"| {row['arm']} - {row['baseline']} | {row['estimate']:+.3f} | {_interval(row['low'], row['high'])} "
                  f"| {_resampled(row)} |" for _, row in differences.iterrows()]
    notes = cmp.notes + cmp.statistics().notes
    return "\n".join(lines + ["", bootstrap_line(cmp) + "."] + ([""] + [f"- {n}" for n in notes] if notes else []))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, title: str) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_learning_curves(cmp: Comparison, path: Path, keys: list[str] | None = None) -> Path:
    """`keys` (default reward and the compared metric; those no run logged are left out) vs step, one line per arm
    (mean over seeds), seeds' min-max shaded."""
    logged = set(cmp.curves["key"])
    keys = [k for k in (keys or dict.fromkeys((*CURVE_KEYS, cmp.metric))) if k in logged]
    fig, axes = _pyplot().subplots(1, max(len(keys), 1), figsize=(6 * max(len(keys), 1), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        data = cmp.curves[cmp.curves["key"] == key]
        for arm in cmp.arms["arm"]:
            summary = data[data["arm"] == arm].groupby("step")["value"].agg(["mean", "min", "max"])
            if summary.empty:
                continue
            line, = ax.plot(summary.index, summary["mean"], marker="o", ms=3, label=arm)
            ax.fill_between(summary.index, summary["min"], summary["max"], color=line.get_color(), alpha=0.15)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
    if axes[0][-1].get_legend_handles_labels()[0]:
        axes[0][-1].legend(fontsize=7, loc="best")
    return _save(fig, path, f"{cmp.experiment}: learning curves (mean over seeds, min-max shaded)")


def plot_effects(cmp: Comparison, path: Path) -> Path:
    """Per swept key: the final metric at each of its values, averaged over every other key and seed (the main
    effect), with the std over those runs as error bars; continuous keys as a scatter. The panels share their y
    axis, so the keys' effect sizes compare at a glance."""
    keys = cmp.keys or ["arm"]
    fig, axes = _pyplot().subplots(1, len(keys), figsize=(3.6 * len(keys), 3.6), squeeze=False, sharey=True)
    runs = cmp.runs.dropna(subset=["final"])
    for ax, key in zip(axes[0], keys):
        values = runs[key].map(str) if key != "arm" else runs["arm"]
        if runs[key].nunique() > 8 and pd.api.types.is_numeric_dtype(runs[key]):
            ax.scatter(runs[key], runs["final"])
            if (runs[key] > 0).all() and runs[key].max() / runs[key].min() > 20:
                ax.set_xscale("log")
        else:
            summary = runs.assign(_v=values).groupby("_v")["final"].agg(["mean", "std", "count"]).fillna(0.0)
            ax.errorbar(range(len(summary)), summary["mean"], yerr=summary["std"], fmt="o-", capsize=4)
            ax.set_xticks(range(len(summary)), summary.index, rotation=30 if key == "arm" else 0, fontsize=8)
        ax.set_title(key.rsplit(".", 1)[-1])
        ax.set_ylabel(f"final {cmp.metric.rsplit('/', 1)[-1]}")
        ax.grid(alpha=0.3)
    return _save(fig, path, f"{cmp.experiment}: effect of each swept key (mean ± std over runs)")


def plot_intervals(rows: pd.DataFrame, labels: list[str], path: Path, *, xlabel: str, title: str,
                   zero_line: bool = False) -> Path:
    """An interval plot: one row per label, its `estimate` as a dot and its [`low`, `high`] as a bar (a hollow
    dot with no bar where there is no interval), the seeds-only ones in grey. `rows`: an intervals.csv or
    differences.csv frame (columns estimate, low, high, method), in `labels`' order."""
    fig, ax = _pyplot().subplots(figsize=(5 + 0.07 * max(map(len, labels), default=0), 0.45 * len(labels) + 1.4))
    for y, (_, row) in enumerate(rows.iterrows()):
        color = "C0" if row["method"] == stats.BY_ITEMS else "grey"
        if math.isnan(row["low"]):
            ax.plot([row["estimate"]], [y], "o", mfc="none", color=color)
            continue
        ax.errorbar([row["estimate"]], [y], xerr=[[row["estimate"] - row["low"]], [row["high"] - row["estimate"]]],
                    fmt="o", color=color, capsize=4)
    if zero_line:
        ax.axvline(0.0, color="black", lw=0.8, ls="--")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path, title)


def plot_arm_intervals(intervals: pd.DataFrame, metric: str, path: Path, experiment: str = "") -> Path:
    """Each arm's final metric with its 95% interval (an intervals.csv frame)."""
    name = metric.rsplit("/", 1)[-1]
    return plot_intervals(intervals, list(intervals["arm"]), path, xlabel=f"final {name}",
                          title=f"{experiment}: final {name}, 95% bootstrap interval (grey: over seeds only)")


def plot_differences(differences: pd.DataFrame, metric: str, path: Path, experiment: str = "") -> Path:
    """Each paired difference arm - baseline with its 95% interval and a line at 0 (a differences.csv frame)."""
    name = metric.rsplit("/", 1)[-1]
    labels = [f"{a} - {b}" for a, b in zip(differences["arm"], differences["baseline"])]
    return plot_intervals(differences, labels, path, xlabel=f"difference in final {name}", zero_line=True,
                          title=f"{experiment}: paired differences, 95% bootstrap interval (grey: by seed only)")


def write_report(cmp: Comparison, out_dir: str | Path, *, log_to_parent: bool = True,
                 curves: list[str] | None = None) -> dict[str, Path]:
    """In `out_dir` (and logged to the parent run): table.txt, table.md, arms.csv, runs.csv, curves.csv (every
    logged point of every metric), items.csv (each run's final per-item results), intervals.csv and
    differences.csv (`Comparison.statistics`), learning_curves.png (`curves`, default reward and the metric),
    effects.png, intervals.png, differences.png and comparison.json (what `load_reports` needs to merge this
    report with others, and the bootstrap's settings)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"table": out / "table.txt", "markdown": out / "table.md", "arms": out / "arms.csv",
             "runs": out / "runs.csv", "curve_points": out / "curves.csv", "items": out / "items.csv",
             "intervals": out / "intervals.csv", "differences": out / "differences.csv", "meta": out / REPORT_META}
    result = cmp.statistics()
    bootstrap = {"resamples": cmp.resamples, "seed": cmp.bootstrap_seed, "baseline": cmp.baseline}
    paths["meta"].write_text(json.dumps({"experiment": cmp.experiment, "metric": cmp.metric, "mode": cmp.mode,
                                         "keys": cmp.keys, "target": cmp.target, "bootstrap": bootstrap},
                                        indent=2) + "\n")
    paths["table"].write_text(format_table(cmp) + "\n")
    paths["markdown"].write_text(markdown_table(cmp) + "\n")
    for key, frame in (("arms", cmp.arms), ("runs", cmp.runs), ("curve_points", cmp.curves),
                       ("items", _items_frame([cmp.items])),
                       ("intervals", result.intervals), ("differences", result.differences)):
        frame.to_csv(paths[key], index=False)
    paths["curves"] = plot_learning_curves(cmp, out / "learning_curves.png", curves)
    paths["effects"] = plot_effects(cmp, out / "effects.png")
    paths["interval_plot"] = plot_arm_intervals(result.intervals, cmp.metric, out / "intervals.png", cmp.experiment)
    paths["difference_plot"] = plot_differences(result.differences, cmp.metric, out / "differences.png",
                                                cmp.experiment)
    if log_to_parent and cmp.parent_run_id:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=cmp.tracking_uri)
        for path in paths.values():
            client.log_artifact(cmp.parent_run_id, str(path), "comparison")
    return paths
