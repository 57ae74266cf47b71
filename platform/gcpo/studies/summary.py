"""A study's numbers where a document quotes them: per claim a short markdown block rendered from the report's
`arms.csv` and `comparisons.csv`, written into the blocks a document (the README) marks for it.

- `claim_block(arms, comparisons, reference, measures)`: each arm's mean with its 95% interval, what the interval
  rests on (seeds x held-out items) and, from the claim's runs.csv and curves.csv, the samples its runs drew (the
  rollout budget) and its mean response length and entropy of its own samples at the last training step; then
  each comparison's difference with its Holm-adjusted interval, the verdict in words
  (`gcpo.studies.method.verdict`) and the paired seeds the claim's target difference would need at the noise the
  study measured (`seeds_needed`: "more items" where no number of seeds reaches it). The rows are the report's
  (`gcpo study report`).
- `read_blocks(folder, references)`: those blocks from a report folder's files.
- `update_blocks(text, study, blocks)`: rewrites every block of `text` marked

      <!-- study NAME/CLAIM -->
      ...
      <!-- /study -->

  for study NAME with the claim's block; blocks of another study are left as they are. An unknown claim or an
  unclosed marker is an error naming its line; a claim with no finished piece reads "No finished piece yet.".
  `gcpo study report --readme FILE` calls it, and a test checks that the README's blocks are what the committed
  report gives, so a number the README quotes is never copied by hand.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from gcpo.studies.report import seeds_text
from gcpo.sweeps.tables import interval_text, number_text

START = re.compile(r"^<!-- study (?P<study>[\w.-]+)/(?P<claim>[\w.=-]+) -->$")
END = "<!-- /study -->"


# measure -> (header, format): the samples a run drew in all (its rollout budget: curves.csv's batch/samples summed
# over steps), and at the last training step the response length (tokens) and entropy of its own samples (runs.csv)
MEASURES = {"samples": ("samples drawn", "{:.0f}"), "length": ("response length", "{:.1f}"),
            "entropy": ("entropy", "{:.3f}")}
SAMPLES_KEY = "batch/samples"


def claim_block(arms: pd.DataFrame, comparisons: pd.DataFrame, reference: str,
                measures: pd.DataFrame | None = None) -> str:
    """The claim's arms (its rows of arms.csv) and comparisons (its rows of comparisons.csv) as two markdown
    tables; `reference` is marked in the first. `measures` (indexed by arm; `arm_measures`) adds the samples its
    runs drew and its mean response length and entropy of its own samples at the last training step."""
    extra = [c for c in MEASURES if measures is not None and c in measures.columns]
    lines = ["| arm | mean | 95% interval | seeds x items |" + "".join(f" {MEASURES[c][0]} |" for c in extra),
             "|---|---|---|---|" + "---|" * len(extra)]
    for row in arms.to_dict("records"):
        name = f"{row['arm']} (reference)" if row["arm"] == reference else row["arm"]
        more = "".join(f" {number_text(measures[c].get(row['arm'], math.nan), MEASURES[c][1])} |" for c in extra)
        lines.append(f"| {name} | {number_text(row['estimate'], '{:.3f}')} | "
                     f"{interval_text(row['low'], row['high'])} | {row['seeds']} x {row['items']} |{more}")
    lines += ["", "| comparison | difference | Holm-adjusted interval | verdict | seeds for the target |",
              "|---|---|---|---|---|"]
    for row in comparisons.to_dict("records"):
        lines.append(f"| {row['comparison']} | {number_text(row['estimate'], '{:+.3f}')} | "
                     f"{interval_text(row['low'], row['high'])} | {row['words']} | "
                     f"{seeds_text(row.get('seeds_needed', math.nan))} |")
    return "\n".join(lines)


def arm_measures(runs: pd.DataFrame, curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per arm, the mean over its runs (a claim's runs.csv) of the last training step's response length (tokens)
    and the entropy of the policy's own samples, and with `curves` (its curves.csv) of the samples each run drew
    (`SAMPLES_KEY` summed over its steps: equal across arms unless one draws more, as DAPO's dynamic sampling does)."""
    out = runs.groupby("arm")[[c for c in MEASURES if c in runs.columns]].mean()
    if curves is not None and (curves["key"] == SAMPLES_KEY).any():
        drawn = curves[curves["key"] == SAMPLES_KEY].groupby(["arm", "run_id"])["value"].sum()
        out.insert(0, "samples", drawn.groupby("arm").mean())
    return out


NOTHING_YET = "No finished piece yet."


def study_blocks(arms: pd.DataFrame, comparisons: pd.DataFrame, references: dict[str, str],
                 measures: dict[str, pd.DataFrame] | None = None) -> dict[str, str]:
    """claim -> its block, for every claim of `references` (claim -> reference arm; `measures`: claim -> its
    `arm_measures`); `NOTHING_YET` for a claim with no finished arm (`arms` may be empty: nothing run yet)."""
    blocks = {}
    for claim, reference in references.items():
        mine = arms[arms["claim"] == claim] if len(arms) else arms
        blocks[claim] = NOTHING_YET if mine.empty else claim_block(
            mine, comparisons[comparisons["claim"] == claim], reference, (measures or {}).get(claim))
    return blocks


def read_blocks(folder: Path, references: dict[str, str]) -> dict[str, str]:
    """`study_blocks` of a report folder: arms.csv, comparisons.csv and each claim's <claim>/runs.csv (nothing
    there yet: every claim `NOTHING_YET`), with each claim's curves.csv for the samples drawn. `gcpo study report
    --readme` writes these blocks."""
    if not (folder / "arms.csv").exists():
        return dict.fromkeys(references, NOTHING_YET)
    measures = {}
    for claim in references:
        runs, curves = folder / claim / "runs.csv", folder / claim / "curves.csv"
        if runs.exists():
            measures[claim] = arm_measures(pd.read_csv(runs), pd.read_csv(curves) if curves.exists() else None)
    return study_blocks(pd.read_csv(folder / "arms.csv"), pd.read_csv(folder / "comparisons.csv"), references,
                        measures)


def update_blocks(text: str, study: str, blocks: dict[str, str]) -> tuple[str, list[str]]:
    """`text` with every block marked for `study` rewritten from `blocks` (claim -> markdown), and the claims
    written, in order. ValueError, naming the line, for an unclosed marker or a claim `blocks` lacks."""
    lines, out, written = text.split("\n"), [], []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        found = START.match(lines[i].strip())
        if not found or found["study"] != study:
            i += 1
            continue
        claim, start = found["claim"], i + 1
        end = next((j for j in range(start, len(lines)) if lines[j].strip() == END), None)
        if end is None:
            raise ValueError(f"line {start}: the block of study {study}, claim {claim!r} has no {END} line")
        if claim not in blocks:
            raise ValueError(f"line {start}: study {study} has no claim {claim!r} (its claims: "
                             f"{', '.join(blocks) or 'none'})")
        out += [blocks[claim], END]
        written.append(claim)
        i = end + 1
    return "\n".join(out), written
