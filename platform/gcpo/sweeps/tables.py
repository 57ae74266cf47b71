"""The comparison as text: the terminal table (`format_table`, table.txt) and the Markdown table (`markdown_table`,
table.md) — per arm the final metric (mean ± std over seeds), its 95% interval and, when some arm has 4 or more
seeds (below that the interquartile mean is the mean), its IQM; then the paired differences with their reading
("above 0", "below 0", "includes 0", or "items only, no verdict" with one seed: never "significant"), minimum
detectable difference and probability of improvement; the A/A checks; the method and the notes."""

from __future__ import annotations

import math

import pandas as pd

from gcpo.sweeps import stats
from gcpo.sweeps.arms import Comparison

IQM_MIN_SEEDS = 4  # below this the 25% trimmed mean cuts nothing: no IQM column


def _pm(row, col: str, fmt: str = "{:.3f}") -> str:
    """An arm's `col` as mean ± std over its runs ("-" when no run has it)."""
    mean, std = row[f"{col}_mean"], row[f"{col}_std"]
    if math.isnan(mean):
        return "-"
    return fmt.format(mean) + (" ± " + fmt.format(std) if row["runs"] > 1 else "")


def interval_text(low: float, high: float, fmt: str = "{:.3f}") -> str:
    return "-" if math.isnan(low) or math.isnan(high) else f"[{fmt.format(low)}, {fmt.format(high)}]"


def rests_on(row) -> str:
    """What an interval rests on: "3 seeds x 30 items", "3 seeds" or "1 seed x 30 items (items only)"."""
    seeds = f"{row['seeds']} seed{'s' if row['seeds'] != 1 else ''}"
    if row["method"] == stats.ITEMS_ONLY:
        return f"{seeds} x {row['items']} items (items only)"
    return f"{seeds} x {row['items']} items" if row["method"] == stats.BY_ITEMS else seeds


def number_text(value: float, fmt: str = "{:.3f}") -> str:
    """`fmt` of a number; "-" for None or NaN."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _arm_columns(cmp: Comparison) -> dict[str, tuple[str, str]]:
    """Per arm: its interval's text and its IQM's ("" when no arm has IQM_MIN_SEEDS seeds)."""
    show_iqm = bool((cmp.arms["runs"] >= IQM_MIN_SEEDS).any())
    return {row["arm"]: (interval_text(row["low"], row["high"]), number_text(row["iqm"]) if show_iqm else "")
            for _, row in cmp.statistics().intervals.iterrows()}


def method_line(cmp: Comparison) -> str:
    """The method, in one line, under the tables."""
    return ("95% intervals: Student t over seeds (per-seed means, S-1 df) and over held-out items (item variance "
            "from a seeds x items ANOVA, N-1 df), combined; one seed: items only, no verdict (gcpo.sweeps.stats)")


def format_table(cmp: Comparison) -> str:
    """The terminal table: one line per arm, best final metric first, with its 95% interval (and IQM); then the
    paired differences, the A/A checks, the method and the notes."""
    width = max([len("arm")] + [len(a) for a in cmp.arms["arm"]])
    target = f"steps→{cmp.target:g}" if cmp.target is not None else "steps→target"
    columns = _arm_columns(cmp)
    iqm = any(text for _, text in columns.values())
    head = (f"{'arm':<{width}}  {'runs':>4}  {'final ' + cmp.metric.rsplit('/', 1)[-1]:>18}  {'95% CI':>16}  "
            + (f"{'IQM':>6}  " if iqm else "")
            + f"{'best':>15}  {target:>12}  {'format':>15}  {'golden share':>13}  {'s/step':>8}")
    lines = [f"experiment {cmp.experiment!r}, metric {cmp.metric} ({cmp.mode}), arms by: {', '.join(cmp.keys) or '-'}",
             head, "-" * len(head)]
    for _, row in cmp.arms.iterrows():
        steps = "-" if math.isnan(row["steps_to_target"]) else f"{row['steps_to_target']:.0f} ({row['reached']}/{row['runs']})"
        ci, iqm_text = columns[row["arm"]]
        lines.append(f"{row['arm']:<{width}}  {row['runs']:>4}  {_pm(row, 'final'):>18}  {ci:>16}  "
                     + (f"{iqm_text:>6}  " if iqm else "")
                     + f"{_pm(row, 'best'):>15}  {steps:>12}  {_pm(row, 'format'):>15}  "
                       f"{_pm(row, 'golden_share', '{:.2f}'):>13}  {_pm(row, 'step_s', '{:.1f}'):>8}")
    return "\n".join(lines + _difference_lines(cmp) + _aa_lines(cmp) + ["", method_line(cmp)]
                     + [f"note: {note}" for note in cmp.notes + cmp.statistics().notes])


def _difference_lines(cmp: Comparison) -> list[str]:
    """The paired differences under the terminal table (none when no two arms share a seed)."""
    differences = cmp.statistics().differences
    if differences.empty:
        return []
    names = [f"{row['arm']} - {row['baseline']}" for _, row in differences.iterrows()]
    width = max(len(n) for n in names)
    lines = ["", f"paired differences in final {cmp.metric.rsplit('/', 1)[-1]} (arm - baseline, over shared seeds "
                 "and items, 95% CI; MDD: the difference this design finds about 80% of the time; P(better): over seed pairs):"]
    for name, (_, row) in zip(names, differences.iterrows()):
        lines.append(f"  {name:<{width}}  {row['estimate']:+.3f}  {interval_text(row['low'], row['high']):>16}  "
                     f"{row['reading']:<22}  MDD {number_text(row['mdd'])}  "
                     f"P(better) {number_text(row['p_improve'], '{:.2f}')}  {rests_on(row)}")
    return lines


def _aa_summary(aa: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Per checked arm: (arm, how many of its splits' intervals exclude 0, what the halves rest on)."""
    out = []
    for arm, group in aa.groupby("arm", sort=False):
        measured = group[group["low"].notna()]
        if measured.empty:
            out.append((arm, f"no interval in {len(group)} splits", rests_on(group.iloc[0])))
            continue
        excluded = int(round(stats.false_positive_share(measured) * len(measured)))
        out.append((arm, f"{excluded} of {len(measured)} splits exclude 0 ({excluded / len(measured):.0%})",
                    rests_on(measured.iloc[0])))
    return out


def _aa_lines(cmp: Comparison) -> list[str]:
    """The A/A checks under the terminal table (none without `--aa`)."""
    summary = _aa_summary(cmp.statistics().aa)
    if not summary:
        return []
    lines = ["", "A/A checks (an arm against itself, its seeds split in two halves; the true difference is 0, "
                 "about 5% of the intervals should exclude it):"]
    lines += [f"  {arm}: {outcome}, halves of {on}" for arm, outcome, on in summary]
    if any(on.endswith("(items only)") for _, _, on in summary):
        lines.append("  (halves of one seed: what a one-seed comparison shows; its exclusions are seed noise read "
                     "as an effect)")
    return lines


def markdown_table(cmp: Comparison) -> str:
    """The arms as a Markdown table (mean ± std over seeds, the final metric's 95% interval, its IQM when shown):
    final and best metric, held-out format rate, final training response length and entropy, golden-answer share,
    seconds per step; then the paired differences, the A/A checks, the method and the notes."""
    name = cmp.metric.rsplit("/", 1)[-1]
    columns = _arm_columns(cmp)
    iqm = any(text for _, text in columns.values())
    lines = [f"| arm | runs | final {name} | 95% CI | " + ("IQM | " if iqm else "") + f"best {name} | format rate "
             "| length (tokens) | entropy | golden share | s/step |", "|---|---|---|---|" + ("---|" if iqm else "")
             + "---|---|---|---|---|---|"]
    for _, row in cmp.arms.iterrows():
        ci, iqm_text = columns[row["arm"]]
        lines.append(f"| {row['arm']} | {row['runs']} | {_pm(row, 'final')} | {ci} | " + (f"{iqm_text} | " if iqm else "")
                     + f"{_pm(row, 'best')} | {_pm(row, 'format')} | {_pm(row, 'length', '{:.1f}')} "
                       f"| {_pm(row, 'entropy', '{:.2f}')} | {_pm(row, 'golden_share', '{:.2f}')} "
                       f"| {_pm(row, 'step_s', '{:.1f}')} |")
    differences = cmp.statistics().differences
    if len(differences):
        lines += ["", f"| arm - baseline | difference in final {name} | 95% CI | reading | MDD (80% power) "
                      "| P(better) | rests on |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {row['arm']} - {row['baseline']} | {row['estimate']:+.3f} "
                  f"| {interval_text(row['low'], row['high'])} | {row['reading']} | {number_text(row['mdd'])} "
                  f"| {number_text(row['p_improve'], '{:.2f}')} | {rests_on(row)} |"
                  for _, row in differences.iterrows()]
    summary = _aa_summary(cmp.statistics().aa)
    if summary:
        lines += ["", "| A/A check (arm against itself) | splits excluding 0 | halves rest on |", "|---|---|---|"]
        lines += [f"| {arm} | {outcome} | {on} |" for arm, outcome, on in summary]
    notes = cmp.notes + cmp.statistics().notes
    return "\n".join(lines + ["", method_line(cmp) + "."] + ([""] + [f"- {n}" for n in notes] if notes else []))
