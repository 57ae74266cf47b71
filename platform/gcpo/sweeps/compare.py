"""Compare runs from MLflow: a table per arm (mean and std over seeds), learning curves, effect plots, CSV.

`load_comparison(experiment, uri)` reads every training run of an experiment (a sweep's parent runs excluded),
or only the children of `parent_run_id`, and groups them into arms by the swept keys: the `gcpo.swept_keys` tag
of the experiment's sweep parents, else the params whose values differ between runs (seeds excepted). An arm's
value of a key is the run's param (every config leaf is one), so plain `gcpo train` runs compare as well.

Per run: final and best value of the metric (the sweep's `gcpo.metric`, else the first `eval/*/pass_at_1`),
the first step reaching `target`, the final format rate and reward, the mean golden-answer share
(`ga/injected_frac`), mean seconds per step, final response length and entropy. Per arm: mean and std over its
runs (std with ddof=1; 0 for a single run); steps-to-target is the mean over runs that reached it, with the
count that did.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

SEED_KEYS = ("trainer.seed",)
IGNORED_PARAM_PREFIXES = ("tracking.", "cluster.", "trainer.output_dir")
CURVE_KEYS = ("reward/mean",)
REPORT_META = "comparison.json"


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


def load_reports(dirs: list[str | Path], *, name: str | None = None) -> Comparison:
    """Merge reports written by `write_report` (a study run in pieces, over several sittings or machines) into one
    comparison: runs and curve points concatenated, arms summarized again. Every report must compare the same
    metric in the same mode; an (arm, seed) found in two reports, or a folder without a report, fails naming it."""
    if not dirs:
        raise ValueError("no reports to merge")
    metas, runs, curves, seen = [], [], [], {}
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
    keys = list(dict.fromkeys(k for m in metas for k in m["keys"]))
    runs_df = pd.concat(runs, ignore_index=True).sort_values(["arm", "seed"]).reset_index(drop=True)
    experiment = name or ", ".join(dict.fromkeys(m["experiment"] for m in metas))
    return Comparison(experiment, "", metas[0]["metric"], metas[0]["mode"], keys, metas[0]["target"], runs_df,
                      summarize_arms(runs_df), pd.concat(curves, ignore_index=True),
                      notes=[f"merged from {len(dirs)} reports"])


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


def load_comparison(experiment: str, tracking_uri: str, *, parent_run_id: str | None = None,
                    metric: str | None = None, target: float | None = None) -> Comparison:
    """Read the runs of `experiment` (or the children of `parent_run_id`) and build the comparison."""
    from mlflow.tracking import MlflowClient

    from gcpo.sweeps.runner import arm_label

    client = MlflowClient(tracking_uri=tracking_uri)
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
    swept = [k for p in parents for k in p.data.tags.get("gcpo.swept_keys", "").split(",") if k]
    keys = list(dict.fromkeys(swept)) or _differing_params(runs)
    metric = metric or next((p.data.tags["gcpo.metric"] for p in parents if "gcpo.metric" in p.data.tags), None) \
        or _default_metric(runs)
    mode = next((p.data.tags["gcpo.mode"] for p in parents if "gcpo.mode" in p.data.tags), "max")
    format_key = metric.rsplit("/", 1)[0] + "/format_rate" if metric.startswith("eval/") else None

    rows, curve_rows = [], []
    for run in runs:
        # a named arm (`arms:` in the space) is not a config leaf: its name is the run's gcpo.swept.arm tag
        params = {k: _parse(run.data.params.get(k, run.data.tags.get(f"gcpo.swept.{k}"))) for k in keys}
        arm = arm_label(params, keys) or "all"
        seed = run.data.params.get("trainer.seed", "")
        histories = {key: _history(client, run.info.run_id, key) for key in dict.fromkeys((metric, *CURVE_KEYS))}
        values = histories[metric]
        best_fn = max if mode == "max" else min
        reached = [s for s, v in values if target is not None and (v >= target if mode == "max" else v <= target)]
        row = {"arm": arm, "seed": seed, "run_id": run.info.run_id, "run_name": run.info.run_name,
               "status": run.info.status, **{k: params[k] for k in keys},
               "final": values[-1][1] if values else math.nan,
               "best": best_fn(v for _, v in values) if values else math.nan,
               "steps_to_target": reached[0] if reached else math.nan,
               "format": _last(client, run.info.run_id, format_key),
               "reward": histories["reward/mean"][-1][1] if histories["reward/mean"] else math.nan,
               "golden_share": _mean(client, run.info.run_id, "ga/injected_frac"),
               "step_s": _mean(client, run.info.run_id, "time/step_s"),
               "length": _last(client, run.info.run_id, "response/length_mean"),
               "entropy": _last(client, run.info.run_id, "policy/entropy")}
        rows.append(row)
        for key, history in histories.items():
            for step, value in history:
                curve_rows.append({"run_id": run.info.run_id, "arm": arm, "seed": seed, "key": key, "step": step,
                                   "value": value})
    runs_df = pd.DataFrame(rows).sort_values(["arm", "seed"]).reset_index(drop=True)
    return Comparison(experiment, tracking_uri, metric, mode, keys, target, runs_df, summarize_arms(runs_df),
                      pd.DataFrame(curve_rows, columns=["run_id", "arm", "seed", "key", "step", "value"]),
                      parent_run_id or (parents[0].info.run_id if len(parents) == 1 else None))


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


def _last(client, run_id: str, key: str | None) -> float:
    history = _history(client, run_id, key) if key else []
    return history[-1][1] if history else math.nan


def _mean(client, run_id: str, key: str) -> float:
    history = _history(client, run_id, key)
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


def format_table(cmp: Comparison) -> str:
    """The terminal table: one line per arm, best final metric first."""
    def pm(row, col, scale=1.0, fmt="{:.3f}"):
        mean, std = row[f"{col}_mean"], row[f"{col}_std"]
        if math.isnan(mean):
            return "-"
        return (fmt.format(mean * scale) + (" ± " + fmt.format(std * scale) if row["runs"] > 1 else ""))

    width = max([len("arm")] + [len(a) for a in cmp.arms["arm"]])
    target = f"steps→{cmp.target:g}" if cmp.target is not None else "steps→target"
    head = (f"{'arm':<{width}}  {'runs':>4}  {'final ' + cmp.metric.rsplit('/', 1)[-1]:>18}  {'best':>15}  "
            f"{target:>12}  {'format':>15}  {'golden share':>13}  {'s/step':>8}")
    lines = [f"experiment {cmp.experiment!r}, metric {cmp.metric} ({cmp.mode}), arms by: {', '.join(cmp.keys) or '-'}",
             head, "-" * len(head)]
    for _, row in cmp.arms.iterrows():
        steps = "-" if math.isnan(row["steps_to_target"]) else f"{row['steps_to_target']:.0f} ({row['reached']}/{row['runs']})"
        lines.append(f"{row['arm']:<{width}}  {row['runs']:>4}  {pm(row, 'final'):>18}  {pm(row, 'best'):>15}  "
                     f"{steps:>12}  {pm(row, 'format'):>15}  {pm(row, 'golden_share', fmt='{:.2f}'):>13}  "
                     f"{pm(row, 'step_s', fmt='{:.1f}'):>8}")
    return "\n".join(lines)


def markdown_table(cmp: Comparison) -> str:
    """The arms as a Markdown table (mean ± std over seeds): final and best metric, held-out format rate, final
    training response length and entropy, golden-answer share, seconds per step."""
    def pm(row, col, fmt="{:.3f}"):
        mean, std = row[f"{col}_mean"], row[f"{col}_std"]
        if math.isnan(mean):
            return "-"
        return fmt.format(mean) + (" ± " + fmt.format(std) if row["runs"] > 1 else "")

    name = cmp.metric.rsplit("/", 1)[-1]
    lines = [f"| arm | runs | final {name} | best {name} | format rate | length (tokens) | entropy | golden share "
             "| s/step |", "|---|---|---|---|---|---|---|---|---|"]
    for _, row in cmp.arms.iterrows():
        lines.append(f"| {row['arm']} | {row['runs']} | {pm(row, 'final')} | {pm(row, 'best')} | {pm(row, 'format')} "
                     f"| {pm(row, 'length', '{:.1f}')} | {pm(row, 'entropy', '{:.2f}')} "
                     f"| {pm(row, 'golden_share', '{:.2f}')} | {pm(row, 'step_s', '{:.1f}')} |")
    return "\n".join(lines)


def plot_learning_curves(cmp: Comparison, path: Path) -> Path:
    """Reward and the held-out metric vs step, one line per arm (mean over seeds), seeds' min-max shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in (*CURVE_KEYS, cmp.metric) if k in set(cmp.curves["key"])]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(6 * max(len(keys), 1), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        data = cmp.curves[cmp.curves["key"] == key]
        for arm in cmp.arms["arm"]:
            stats = data[data["arm"] == arm].groupby("step")["value"].agg(["mean", "min", "max"])
            if stats.empty:
                continue
            line, = ax.plot(stats.index, stats["mean"], marker="o", ms=3, label=arm)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.15)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{cmp.experiment}: learning curves (mean over seeds, min-max shaded)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_effects(cmp: Comparison, path: Path) -> Path:
    """Per swept key: the final metric at each of its values, averaged over every other key and seed (the main
    effect), with the std over those runs as error bars; continuous keys as a scatter. The panels share their y
    axis, so the keys' effect sizes compare at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = cmp.keys or ["arm"]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.6), squeeze=False, sharey=True)
    runs = cmp.runs.dropna(subset=["final"])
    for ax, key in zip(axes[0], keys):
        values = runs[key].map(str) if key != "arm" else runs["arm"]
        if runs[key].nunique() > 8 and pd.api.types.is_numeric_dtype(runs[key]):
            ax.scatter(runs[key], runs["final"])
            if (runs[key] > 0).all() and runs[key].max() / runs[key].min() > 20:
                ax.set_xscale("log")
        else:
            stats = runs.assign(_v=values).groupby("_v")["final"].agg(["mean", "std", "count"]).fillna(0.0)
            ax.errorbar(range(len(stats)), stats["mean"], yerr=stats["std"], fmt="o-", capsize=4)
            ax.set_xticks(range(len(stats)), stats.index, rotation=30 if key == "arm" else 0, fontsize=8)
        ax.set_title(key.rsplit(".", 1)[-1])
        ax.set_ylabel(f"final {cmp.metric.rsplit('/', 1)[-1]}")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{cmp.experiment}: effect of each swept key (mean ± std over runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(cmp: Comparison, out_dir: str | Path, *, log_to_parent: bool = True) -> dict[str, Path]:
    """table.txt, table.md, arms.csv, runs.csv, curves.csv (every logged point of the curves), learning_curves.png,
    effects.png and comparison.json (what `load_reports` needs to merge this report with others) in `out_dir`
    (logged to the parent run)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"table": out / "table.txt", "markdown": out / "table.md", "arms": out / "arms.csv",
             "runs": out / "runs.csv", "curve_points": out / "curves.csv", "meta": out / REPORT_META}
    paths["meta"].write_text(json.dumps({"experiment": cmp.experiment, "metric": cmp.metric, "mode": cmp.mode,
                                         "keys": cmp.keys, "target": cmp.target}, indent=2) + "\n")
    paths["table"].write_text(format_table(cmp) + "\n")
    paths["markdown"].write_text(markdown_table(cmp) + "\n")
    cmp.arms.to_csv(paths["arms"], index=False)
    cmp.runs.to_csv(paths["runs"], index=False)
    cmp.curves.to_csv(paths["curve_points"], index=False)
    paths["curves"] = plot_learning_curves(cmp, out / "learning_curves.png")
    paths["effects"] = plot_effects(cmp, out / "effects.png")
    if log_to_parent and cmp.parent_run_id:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=cmp.tracking_uri)
        for path in paths.values():
            client.log_artifact(cmp.parent_run_id, str(path), "comparison")
    return paths
