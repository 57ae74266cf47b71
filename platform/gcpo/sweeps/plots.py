"""The comparison's plots (matplotlib, Agg): learning curves, each swept key's main effect, the arms' intervals
and the paired differences (`learning_curves.png`, `effects.png`, `intervals.png`, `differences.png`)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from gcpo.sweeps import stats
from gcpo.sweeps.arms import Comparison

CURVE_KEYS = ("reward/mean",)  # plotted by default, with the compared metric; curves.csv holds every key


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
    dot with no bar where there is no interval), the seeds-only ones in grey, the items-only ones (one seed, no
    verdict) grey, hollow and dashed; no colour says "better". `rows`: an intervals.csv or differences.csv frame
    (columns estimate, low, high, method), in `labels`' order."""
    fig, ax = _pyplot().subplots(figsize=(5 + 0.07 * max(map(len, labels), default=0), 0.45 * len(labels) + 1.4))
    for y, (_, row) in enumerate(rows.iterrows()):
        color = "C0" if row["method"] == stats.BY_ITEMS else "grey"
        hollow = row["method"] == stats.ITEMS_ONLY  # one seed: items only, no verdict
        if math.isnan(row["low"]):
            ax.plot([row["estimate"]], [y], "o", mfc="none", color=color)
            continue
        bar = ax.errorbar([row["estimate"]], [y], xerr=[[row["estimate"] - row["low"]], [row["high"] - row["estimate"]]],
                          fmt="o", color=color, capsize=4, mfc="none" if hollow else color)
        if hollow:
            bar[-1][0].set_linestyle("--")
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
                          title=f"{experiment}: final {name}, 95% interval\n(grey: seeds only; dashed: one seed, items only)")


def plot_differences(differences: pd.DataFrame, metric: str, path: Path, experiment: str = "") -> Path:
    """Each paired difference arm - baseline with its 95% interval and a line at 0 (a differences.csv frame)."""
    name = metric.rsplit("/", 1)[-1]
    labels = [f"{a} - {b}" for a, b in zip(differences["arm"], differences["baseline"])]
    return plot_intervals(differences, labels, path, xlabel=f"difference in final {name}", zero_line=True,
                          title=f"{experiment}: paired differences, 95% interval\n(grey: seeds only; dashed: one seed, no verdict)")
