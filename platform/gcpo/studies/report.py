"""A study's report (`gcpo study report`, `status`) and plan (`gcpo study plan`): text, markdown, CSV and figures.

`write_study_report(study, out, comparisons)` writes to OUT: report.md (per claim: the arms' means with 95%
intervals and IQM, the comparisons with their 95% and Holm-adjusted intervals and verdicts in words, the learning
curves; then the study's code version and dtype and the cost table from `study.json`: each piece's wall clock,
date, machine and CPU flags), arms.csv, comparisons.csv, comparisons.png (the adjusted intervals); each claim's
`gcpo compare` report (learning_curves.png with the seeds' range as a band, intervals.png, CSV) is in
OUT/<claim>/.
`plan_table` is the plan: per claim the MDD at the planned seeds and items, the seeds needed for the claim's
target difference, the trials and the wall-clock estimate.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from gcpo.studies import method
from gcpo.studies.analysis import metric_components, pilot_components, study_arms, study_comparisons
from gcpo.studies.study_file import Study
from gcpo.sweeps.tables import interval_text, number_text

PLAN_COLUMNS = ["claim", "comparisons", "seeds", "items", "alpha", "sd_seed", "sd_item", "sd_resid", "mdd",
                "sd_seed_upper", "mdd_seed_upper", "target", "seeds_needed", "trials", "hours", "source", "metric_arm",
                "metric_sd_seed", "metric_sd_item"]


def plan_table(study: Study, pilots: dict[str, Any], items: dict[str, int], cost_s: float | None) -> pd.DataFrame:
    """One row per claim (`pilots`: claim -> a comparison with runs, items and metric; `items`: claim -> held-out items;
    `cost_s`: seconds per trial, None when unmeasured): the MDD at the planned seeds at alpha / (m K), the seeds
    its target difference needs, and the hours its planned trials take."""
    alpha = method.adjusted_alpha(study.comparisons, study.looks)
    rows = []
    for name, claim in study.claims.items():
        pilot = pilots[name]
        parts, source = pilot_components(claim, pilot.runs, pilot.items, pilot.metric)
        seeds, n = len(claim.seeds), items[name]
        row = {"claim": name, "comparisons": claim.comparisons, "seeds": seeds, "items": n, "alpha": alpha,
               "target": claim.target_difference, "trials": len(claim.arms) * seeds, "source": source}
        row["hours"] = cost_s * row["trials"] / 3600 if cost_s else math.nan
        own, arm = metric_components(claim, pilot.runs, pilot.items, pilot.metric)
        if own is not None:
            row |= {"metric_arm": arm, "metric_sd_seed": math.sqrt(own.seed), "metric_sd_item": math.sqrt(own.item)}
        if parts is not None:
            row |= {"sd_seed": math.sqrt(parts.seed), "sd_item": math.sqrt(parts.item),
                    "sd_resid": math.sqrt(parts.resid), "mdd": method.planned_mdd(parts, max(seeds, 2), n,
                                                                                  alpha=alpha),
                    "seeds_needed": method.seeds_needed(parts, n, claim.target_difference, alpha=alpha)}
            upper = method.seed_share_upper(parts)
            row |= {"sd_seed_upper": math.sqrt(upper.seed),
                    "mdd_seed_upper": method.planned_mdd(upper, max(seeds, 2), n, alpha=alpha)}
        rows.append(row)
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def format_plan(study: Study, plan: pd.DataFrame, cost_s: float | None, runs: int | None = None) -> str:
    """The plan as text: one block per claim, then the study's total; with `runs` (the distinct runs of its
    trials, `gcpo.studies.reuse`) the total says how many trials reuse another's run and costs only the runs."""
    lines = [f"study {study.name}: {study.comparisons} comparisons, {study.looks} look(s); each planned at alpha "
             f"{method.adjusted_alpha(study.comparisons, study.looks):.4f} (0.05 / (comparisons x looks)), 80% "
             f"power; a trial costs {number_text(cost_s, '{:.0f}')} s on this machine"]
    for row in plan.to_dict("records"):
        needed = row["seeds_needed"]
        if math.isnan(row["mdd"]):
            needed = "unknown: the pilot does not measure the variance"
        elif needed is None or (isinstance(needed, float) and math.isnan(needed)):
            needed = "more items needed: seeds alone cannot reach it"
        else:
            needed = f"{int(needed)} seeds"
        lines += [f"\n{row['claim']}: {row['comparisons']} comparisons, {row['seeds']} seeds x {row['items']} items "
                  f"({row['trials']} trials, {number_text(row['hours'], '{:.2f}')} h)",
                  f"  the metric ({row['metric_arm'] if isinstance(row['metric_arm'], str) else '-'}): sd seed "
                  f"{number_text(row['metric_sd_seed'])}, sd item {number_text(row['metric_sd_item'])}",
                  f"  its comparisons, from {row['source']}: sd seed {number_text(row['sd_seed'])}, sd item "
                  f"{number_text(row['sd_item'])}, sd of a seed on one item {number_text(row['sd_resid'])}",
                  f"  detectable difference at the planned seeds: {number_text(row['mdd'])}; for the target "
                  f"{row['target']:.3f}: {needed}"]
        if not math.isnan(row["mdd"]):
            lines.append(f"  if the seeds disagree more than the pilot's (its sd seed at the 80% upper bound, "
                         f"{number_text(row['sd_seed_upper'])}): {number_text(row['mdd_seed_upper'])}")
    trials = int(plan["trials"].sum())
    total = plan["hours"].sum(min_count=1)
    reused = "" if runs is None or runs == trials else f" ({trials - runs} reuse another trial's run: {runs} to train)"
    if reused and cost_s:
        total = cost_s * runs / 3600
    budget = f" of a budget of {study.budget_hours:g} h" if study.budget_hours else ""
    lines.append(f"\ntotal: {trials} trials{reused}, {number_text(total, '{:.2f}')} h{budget}")
    return "\n".join(lines)


def _arm_lines(arms: pd.DataFrame) -> list[str]:
    lines = ["| arm | mean | 95% interval | IQM | seeds | items |", "|---|---|---|---|---|---|"]
    for row in arms.to_dict("records"):
        lines.append(f"| {row['arm']} | {number_text(row['estimate'])} | {interval_text(row['low'], row['high'])} | "
                     f"{number_text(row['iqm'])} | {row['seeds']} | {row['items']} |")
    return lines


def seeds_text(seeds: float) -> str:
    """A comparison's `seeds_needed`: a count, "more items" (inf: no number of seeds reaches the target at these
    items), or "-" (not measured: fewer than 2 seeds)."""
    if math.isnan(seeds):
        return "-"
    return "more items" if math.isinf(seeds) else str(int(seeds))


def _comparison_lines(table: pd.DataFrame) -> list[str]:
    lines = ["| comparison | difference | 95% interval | Holm-adjusted interval | level | p (Holm) | reached MDD | "
             "seeds for the target |", "|---|---|---|---|---|---|---|---|"]
    for row in table.to_dict("records"):
        level = "-" if math.isnan(row["alpha"]) else f"{100 * (1 - row['alpha']):.2f}%"
        lines.append(f"| {row['comparison']} | {number_text(row['estimate'], '{:+.3f}')} | "
                     f"{interval_text(row['low95'], row['high95'])} | {interval_text(row['low'], row['high'])} | "
                     f"{level} | {number_text(row['p_holm'], '{:.3g}')} | {number_text(row['mdd'])} | "
                     f"{seeds_text(row.get('seeds_needed', math.nan))} |")
    return lines + [""] + [f"- **{row['verdict']}**: {row['words']}" for row in table.to_dict("records")]


def markdown_report(study: Study, arms: pd.DataFrame, table: pd.DataFrame, done: tuple[int, int]) -> str:
    family = method.look_alpha(study.looks)
    lines = [f"# Study `{study.name}`", "", study.description, "",
             f"{done[0]} of {done[1]} planned pieces done. Intervals over seeds and held-out items "
             f"(`gcpo.sweeps.stats`); the comparisons Holm-adjusted together ({len(table)} of them) at family "
             f"level {family:.4f} (0.05 over {study.looks} look(s)). The method: docs/studies.md.", ""]
    for name, claim in study.claims.items():
        lines += [f"## {name}", "", claim.description, "", f"Reference: `{claim.reference}`; target difference "
                  f"{claim.target_difference:.3f}; metric `{claim.metric}`.", ""]
        chosen = arms[arms["claim"] == name]
        if chosen.empty:
            lines += ["No finished piece yet.", ""]
            continue
        lines += _arm_lines(chosen) + [""] + _comparison_lines(table[table["claim"] == name]) + [""]
        lines += [f"![{name}: comparisons]({name}/comparisons.png) ![{name}: learning curves]"
                  f"({name}/learning_curves.png)", ""]
    lines += ["![adjusted intervals](comparisons.png)", ""]
    return "\n".join(lines)


def write_study_report(study: Study, out: Path, comparisons: dict[str, Any],
                       done: tuple[int, int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """report.md, arms.csv, comparisons.csv and comparisons.png in `out`, and each claim's comparisons.png in its
    folder; returns (arms, comparisons)."""
    from gcpo.studies.reuse import reused_records
    from gcpo.studies.runner import load_state
    from gcpo.sweeps.plots import plot_intervals

    arms, table = study_arms(study, comparisons), study_comparisons(study, comparisons)
    out.mkdir(parents=True, exist_ok=True)
    arms.to_csv(out / "arms.csv", index=False)
    table.to_csv(out / "comparisons.csv", index=False)
    if len(table):
        labels = [f"{c}: {x}" for c, x in zip(table["claim"], table["comparison"])]
        plot_intervals(table, labels, out / "comparisons.png", xlabel="difference (Holm-adjusted interval)",
                       zero_line=True, title=f"{study.name}: comparisons, Holm-adjusted intervals")
    for claim, rows in table.groupby("claim", sort=False):  # one figure per claim, beside its other plots
        plot_intervals(rows, list(rows["comparison"]), out / claim / "comparisons.png", zero_line=True,
                       xlabel="difference (Holm-adjusted over the study)", title=f"{study.name}: {claim}")
    cost = cost_lines(load_state(out), reused_records(out))
    warnings = "".join(f"**{line}**\n\n" for line in suspect_lines(suspect_pieces(out)))
    (out / "report.md").write_text(warnings + markdown_report(study, arms, table, done) + "\n" + cost)
    return arms, table


def suspect_pieces(out: Path) -> dict[str, list[str]]:
    """Finished pieces (a report exists) whose runs did not all end FINISHED in MLflow: piece -> the other
    statuses. A piece is written only when its trials ended at their last step (`gcpo.sweeps.runner.trial_status`);
    one written by an older runner from an interrupted trial shows here (its run KILLED), so a report never quotes
    it silently."""
    suspect = {}
    for runs in sorted(out.glob("pieces/*/*/runs.csv")):
        statuses = pd.read_csv(runs, usecols=lambda c: c == "status").get("status", pd.Series(dtype=str))
        other = sorted(set(statuses.dropna()) - {"FINISHED"})
        if other:
            suspect[f"{runs.parent.parent.name}/{runs.parent.name}"] = other
    return suspect


def suspect_lines(suspect: dict[str, list[str]]) -> list[str]:
    """What `report` and `status` say about `suspect_pieces`: each piece and how to train it again."""
    return [f"suspect piece {piece}: its run ended {', '.join(statuses)}, not FINISHED (an interrupted trial?); "
            f"delete pieces/{piece} to train it again" for piece, statuses in suspect.items()]


def format_status(study: Study, table: pd.DataFrame, done: dict[str, tuple[int, int]]) -> str:
    """`gcpo study status`: per claim the pieces done and each comparison's verdict in words."""
    lines = [f"study {study.name}"]
    for name in study.claims:
        finished, total = done[name]
        lines.append(f"\n{name}: {finished} of {total} pieces done")
        lines += [f"  {row['words']}" for row in table[table["claim"] == name].to_dict("records")]
    return "\n".join(lines)


def cost_lines(state: dict[str, Any], reused: dict[str, dict[str, Any]] | None = None) -> str:
    """report.md's last section: the study's version (`study.json`) and each piece's cost, where it ran; then the
    `reused` pieces (`gcpo.studies.reuse.reused_records`), which cost nothing."""
    version = state.get("version") or {}
    lines = ["## Version and cost", ""]
    if version:
        lines += [f"Every piece ran with gcpo source `{version.get('gcpo_source', '?')[:12]}` (commit "
                  f"`{version.get('commit', 'none')}`), torch {version.get('torch')}, transformers "
                  f"{version.get('transformers')}, vLLM {version.get('vllm')}, dtype {version.get('dtype')} "
                  "(`gcpo study run` refuses another).", ""]
    pieces = state.get("pieces", {})
    if not pieces:
        lines.append("No piece timed yet.")
    else:
        lines += ["| piece | wall clock | finished | machine | CPU flags |", "|---|---|---|---|---|"]
        for name, p in pieces.items():
            where = p.get("machine") or {}
            lines.append(f"| {name}{' (failed)' if p.get('failed') else ''} | {p['wall_s'] / 60:.1f} min | "
                         f"{p.get('finished', '-')} | {where.get('cpus', '?')} cores, {where.get('processor', '?')}"
                         f" | {where.get('cpu_flags', '-')} |")
        total = sum(p["wall_s"] for p in pieces.values())
        lines += ["", f"Total: {total / 3600:.2f} h over {len(pieces)} pieces."]
    return "\n".join(lines + [""] + _reused_lines(reused or {}))


def _reused_lines(reused: dict[str, dict[str, Any]]) -> list[str]:
    """The pieces not trained because a finished piece had the same run config (`gcpo.studies.reuse`)."""
    if not reused:
        return []
    lines = [f"{len(reused)} pieces were not trained: each has the run config of a finished piece (the same "
             "fingerprint, `gcpo.studies.reuse`) and reports its runs.", "",
             "| piece | its runs are those of | run fingerprint |", "|---|---|---|"]
    lines += [f"| {name} | {record['study'] + ': ' if record.get('study') else ''}{record['from']} | "
              f"`{record['fingerprint'][:12]}` |" for name, record in reused.items()]
    return lines + [""]
