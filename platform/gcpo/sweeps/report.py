"""A comparison's report folder: `write_report` writes it (tables, CSV, plots, comparison.json; logged to the
sweep's parent run when there is one), `load_reports` merges such folders back into one comparison without MLflow
(a study run in pieces, over several sittings or machines)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from gcpo.sweeps import plots
from gcpo.sweeps.arms import Comparison, items_frame, summarize_arms
from gcpo.sweeps.tables import format_table, markdown_table

REPORT_META = "comparison.json"
REPORT_FILES = ("table.txt, table.md, arms.csv, runs.csv, curves.csv, items.csv, intervals.csv, differences.csv, "
                "aa.csv, learning_curves.png, effects.png, intervals.png, differences.png, comparison.json")
CSV_TYPES = {"arm": str, "seed": str}


def _read_piece(folder: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """One report folder's comparison.json, runs, curve points and per-item results (None before items.csv)."""
    if not (folder / REPORT_META).exists():
        raise ValueError(f"{folder} holds no report ({REPORT_META} missing; write it with gcpo compare --out)")
    meta = json.loads((folder / REPORT_META).read_text())
    runs = pd.read_csv(folder / "runs.csv", dtype=CSV_TYPES)
    # fixed dtypes: a report whose runs logged no curve point has a header-only curves.csv
    curves = pd.read_csv(folder / "curves.csv", dtype={**CSV_TYPES, "key": str, "step": "int64", "value": "float64"})
    items = pd.read_csv(folder / "items.csv", dtype={**CSV_TYPES, "task": str, "item_id": str}) \
        if (folder / "items.csv").exists() else None  # reports written before per-item results have none
    return meta, runs, curves, items


def load_reports(dirs: list[str | Path], *, name: str | None = None) -> Comparison:
    """Merge reports written by `write_report` into one comparison: runs, curve points and per-item results (where
    a report has them) concatenated, arms summarized again. Every report must compare the same metric in the same
    mode; an (arm, seed) found in two reports, or a folder without a report, fails naming it."""
    if not dirs:
        raise ValueError("no reports to merge")
    metas, runs, curves, items, seen = [], [], [], [], {}
    for folder in map(Path, dirs):
        meta, frame, points, per_item = _read_piece(folder)
        if metas and (meta["metric"], meta["mode"]) != (metas[0]["metric"], metas[0]["mode"]):
            raise ValueError(f"{folder} compares {meta['metric']} ({meta['mode']}), {dirs[0]} compares "
                             f"{metas[0]['metric']} ({metas[0]['mode']}): reports of one metric only")
        for arm, seed in zip(frame["arm"], frame["seed"]):
            if (arm, seed) in seen:
                raise ValueError(f"arm {arm!r} seed {seed} is in both {seen[arm, seed]} and {folder}")
            seen[arm, seed] = folder
        metas.append(meta)
        runs.append(frame)
        curves.append(points)
        items += [per_item] if per_item is not None else []
    keys = list(dict.fromkeys(k for m in metas for k in m["keys"]))
    runs_df = pd.concat(runs, ignore_index=True).sort_values(["arm", "seed"]).reset_index(drop=True)
    experiment = name or ", ".join(dict.fromkeys(m["experiment"] for m in metas))
    return Comparison(experiment, "", metas[0]["metric"], metas[0]["mode"], keys, metas[0]["target"], runs_df,
                      summarize_arms(runs_df), pd.concat(curves, ignore_index=True),
                      notes=[f"merged from {len(dirs)} reports"], items=items_frame(items))


def _meta(cmp: Comparison) -> str:
    """comparison.json: what `load_reports` needs, and the statistics' settings."""
    statistics = {"method": "t over seeds + items (gcpo.sweeps.stats)", "level": 0.95, "baseline": cmp.baseline,
                  "aa": cmp.aa}
    return json.dumps({"experiment": cmp.experiment, "metric": cmp.metric, "mode": cmp.mode, "keys": cmp.keys,
                       "target": cmp.target, "statistics": statistics}, indent=2) + "\n"


def write_report(cmp: Comparison, out_dir: str | Path, *, log_to_parent: bool = True,
                 curves: list[str] | None = None) -> dict[str, Path]:
    """In `out_dir` (and logged to the parent run): table.txt, table.md, arms.csv, runs.csv, curves.csv (every
    logged point of every metric), items.csv (each run's final per-item results), intervals.csv, differences.csv
    and aa.csv (`Comparison.statistics`; aa.csv only with A/A checks), learning_curves.png (`curves`, default
    reward and the metric), effects.png, intervals.png, differences.png and comparison.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = cmp.statistics()
    frames = {"arms": cmp.arms, "runs": cmp.runs, "curve_points": cmp.curves, "items": items_frame([cmp.items]),
              "intervals": result.intervals, "differences": result.differences}
    names = {"curve_points": "curves.csv"}
    if cmp.aa:
        frames["aa"] = result.aa
    paths = {"table": out / "table.txt", "markdown": out / "table.md", "meta": out / REPORT_META}
    paths["meta"].write_text(_meta(cmp))
    paths["table"].write_text(format_table(cmp) + "\n")
    paths["markdown"].write_text(markdown_table(cmp) + "\n")
    for key, frame in frames.items():
        paths[key] = out / names.get(key, f"{key}.csv")
        frame.to_csv(paths[key], index=False)
    paths["curves"] = plots.plot_learning_curves(cmp, out / "learning_curves.png", curves)
    paths["effects"] = plots.plot_effects(cmp, out / "effects.png")
    paths["interval_plot"] = plots.plot_arm_intervals(result.intervals, cmp.metric, out / "intervals.png",
                                                      cmp.experiment)
    paths["difference_plot"] = plots.plot_differences(result.differences, cmp.metric, out / "differences.png",
                                                      cmp.experiment)
    if log_to_parent and cmp.parent_run_id:
        from gcpo.tracking.reading import log_report

        log_report(cmp.tracking_uri, cmp.parent_run_id, list(paths.values()))
    return paths
