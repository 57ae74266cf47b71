"""A study never pays twice for one run: a piece whose run config equals a finished piece's reuses its runs.

Two claims often hold the same run: the reference arm of one claim is an arm of another (`gcpo` in `rivals` and in
`imitation`), or a cell of an ablation grid is a named arm elsewhere. Before a piece trains, `gcpo study run`
looks for a finished piece at the same seed whose **run fingerprint** is the same, and if there is one it writes
the piece's report from that piece's (`reuse_piece`): the same runs, curves and per-item results, relabelled with
this piece's arm (and its grid values for a factorial claim), and a `reused.json` beside them naming the source and
the fingerprint. `gcpo study reuse` does the same without training anything (for pieces run by another checkout).

The run fingerprint (`run_fingerprint`) is a hash of the whole resolved run config (`gcpo.config.RunConfig`, the
seed included) less what cannot change a run's numbers:
- `tracking.*`: where the run is logged (each claim logs to its own MLflow experiment);
- the clip range of the importance-sampling level the run does not use: `algorithm.clip_low` / `clip_high` (the
  token ratio's range) when `algorithm.ratio_level` is `sequence`, `clip_low_sequence` / `clip_high_sequence`
  when it is `token` (`gcpo.training.objectives.clip_range` is the one reader of either pair).
The list is deliberately short: any other difference, even one that might not matter, makes two pieces different
and both train. A run of an equal config at the same seed is a draw of the same experiment, so reusing it changes
no claim's statistics; here it is even the same draw (samples carry per-request seeds, and a rerun reproduces its
metric history: tests/cluster/test_hosts.py). Reuse happens within one study folder, whose pieces share its one
code version, or from another study's folder of the same version (`--reuse-from`, checked by
`gcpo.studies.runner.check_reuse_version`); and only where the finished piece's report reads the claim's metric
(a report's `final` is that metric's). Two claims that share a run are not independent of each other; each claim's
own comparisons are unaffected.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gcpo.config import to_flat_dict
from gcpo.studies.layout import is_done, piece_dir, pieces, space_file

REUSED_FILE = "reused.json"
# the keys of each ratio level's unused clip range (gcpo.training.objectives.clip_range reads the other pair)
UNUSED_CLIP_KEYS = {"sequence": ("algorithm.clip_low", "algorithm.clip_high"),
                    "token": ("algorithm.clip_low_sequence", "algorithm.clip_high_sequence")}


def run_fingerprint(cfg) -> str:
    """The hash of a `RunConfig` less what cannot change its numbers (module docstring)."""
    flat = to_flat_dict(cfg)
    unused = UNUSED_CLIP_KEYS.get(cfg.algorithm.ratio_level, ())
    kept = {k: v for k, v in flat.items() if not k.startswith("tracking.") and k not in unused}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def piece_fingerprints(study, todo: list[dict], overrides: list[str]) -> dict[str, str]:
    """`<claim>/<piece name>` -> the run fingerprint of that piece's one trial (its arm at its seed); the claims'
    spaces are read from a temporary folder, so nothing is written to a study's folder."""
    from gcpo.sweeps.space import load_space, trial_config

    with tempfile.TemporaryDirectory() as folder:
        spaces = {name: load_space(space_file(Path(folder), study.claims[name]), overrides)
                  for name in {p["claim"] for p in todo}}
    return {piece_key(p): run_fingerprint(trial_config(spaces[p["claim"]], _params(p))) for p in todo}


def _params(piece: dict) -> dict[str, Any]:
    return {key: values[0] for key, values in piece["only"].items()} | {"trainer.seed": piece["seed"]}


def piece_key(piece: dict) -> str:
    return f"{piece['claim']}/{piece['name']}"


@dataclass(frozen=True)
class Pool:
    """Finished pieces a run may be found in: a study folder's pieces with their fingerprints; `study` is None
    for the folder being run, else the other study's name."""
    out: Path
    todo: list[dict]
    fingerprints: dict[str, str]
    study: str | None = None


def other_pool(study_path: str | Path, out: Path, overrides: list[str]) -> Pool:
    """Another study's folder as a `Pool` (`--reuse-from STUDY.yaml DIR`): every piece of its every look with its
    fingerprint (its folder is only read)."""
    from gcpo.studies.study_file import load_study

    other = load_study(study_path)
    todo = pieces(other, other.looks - 1)
    return Pool(Path(out), todo, piece_fingerprints(other, todo, overrides), other.name)


def find_source(piece: dict, fingerprint: str, pools: list[Pool], metric: str) -> tuple[dict, Pool] | None:
    """The first finished piece of `pools` (not `piece` itself, not itself a reuse) with `fingerprint` whose
    report reads `metric`."""
    for pool in pools:
        for other in pool.todo:
            if pool.fingerprints[piece_key(other)] != fingerprint or (pool.study is None and other is piece):
                continue
            folder = piece_dir(pool.out, other)
            if is_done(pool.out, other) and not (folder / REUSED_FILE).exists() and _metric(folder) == metric:
                return other, pool
    return None


def _metric(folder: Path) -> str | None:
    from gcpo.sweeps.compare import REPORT_META

    meta = folder / REPORT_META
    return json.loads(meta.read_text()).get("metric") if meta.exists() else None


def reuse_piece(study, piece: dict, source: tuple[dict, Pool], out: Path, fingerprint: str) -> Path:
    """Write `piece`'s report from `source`'s (the same runs relabelled, module docstring); returns its folder.
    Written to a temporary folder first, so a piece is never half there (its runs.csv marks it done)."""
    from gcpo.sweeps.compare import Comparison, load_reports, summarize_arms, write_report

    point = study.claims[piece["claim"]].points[piece["arm"]]
    old = load_reports([piece_dir(source[1].out, source[0])])
    runs = _relabel_runs(old.runs, old.keys, piece["arm"], point)
    relabel = {"arm": piece["arm"]}
    cmp = Comparison(f"{study.name}-{piece['claim']}", "", old.metric, old.mode, list(point), old.target, runs,
                     summarize_arms(runs), old.curves.assign(**relabel),
                     notes=[f"reused from {source_name(source)} (the same run config)"],
                     items=old.items.assign(**relabel) if len(old.items) else old.items)
    target = piece_dir(out, piece)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    write_report(cmp, staging, log_to_parent=False)
    record = {"from": piece_key(source[0]), "study": source[1].study, "fingerprint": fingerprint,
              "run_ids": list(runs["run_id"])}
    (staging / REUSED_FILE).write_text(json.dumps(record, indent=2) + "\n")
    if target.exists():  # an interrupted piece's leftovers (no runs.csv, else it would be done)
        shutil.rmtree(target)
    staging.rename(target)
    return target


def source_name(source: tuple[dict, Pool]) -> str:
    """`rivals/gcpo_s0`, or `warm_claims: rivals/gcpo_s0` for another study's piece."""
    return (f"{source[1].study}: " if source[1].study else "") + piece_key(source[0])


def _relabel_runs(runs: pd.DataFrame, old_keys: list[str], arm: str, point: dict[str, Any]) -> pd.DataFrame:
    """runs.csv's rows under `arm`, its grid-value columns those of `point` (after `status`, as in a sweep's)."""
    runs = runs.drop(columns=[k for k in old_keys if k in runs.columns and k != "arm"]).assign(arm=arm)
    at = list(runs.columns).index("status") + 1
    for offset, (key, value) in enumerate((k, v) for k, v in point.items() if k != "arm"):
        runs.insert(at + offset, key, value)
    return runs


def runs_to_train(todo: list[dict], fingerprints: dict[str, str], out: Path, others: list[Pool] = ()) -> int:
    """The distinct runs `todo`'s pending pieces still need: their fingerprints less those of finished pieces,
    here or in the `others` pools."""
    done = {piece_key(p) for p in todo if is_done(out, p)}
    pending = {v for k, v in fingerprints.items() if k not in done}
    return len(pending - {fingerprints[k] for k in done} - finished_runs(others))


def finished_runs(pools: list[Pool]) -> set[str]:
    """The fingerprints of the finished pieces of `pools`: runs a study that reuses from them need not train."""
    return {pool.fingerprints[piece_key(p)] for pool in pools for p in pool.todo if is_done(pool.out, p)}


def reuse_one(study, piece: dict, pools: list[Pool]) -> dict | None:
    """Reuse `piece` (of the study folder `pools[0]`) if it is pending and a finished piece of `pools` equals it;
    returns the source piece (None: not reused). One line when it is: `[study] imitation: gcpo, seed 0 reused
    from rivals/gcpo_s0 (the same run config)`."""
    here = pools[0]
    fingerprint = here.fingerprints[piece_key(piece)]
    metric = study.claims[piece["claim"]].metric
    source = None if is_done(here.out, piece) else find_source(piece, fingerprint, pools, metric)
    if source is None:
        return None
    reuse_piece(study, piece, source, here.out, fingerprint)
    print(f"[study] {piece['claim']}: {piece['arm']}, seed {piece['seed']} reused from {source_name(source)} "
          "(the same run config)", flush=True)
    return source[0]


def reuse_pending(study, pools: list[Pool]) -> list[tuple[dict, dict]]:
    """Reuse every pending piece of the study folder `pools[0]` that a finished piece of `pools` equals
    (`reuse_one`); returns the (piece, source) pairs written."""
    pairs = [(piece, reuse_one(study, piece, pools)) for piece in pools[0].todo]
    return [(piece, source) for piece, source in pairs if source is not None]


def reused_records(out: Path) -> dict[str, dict[str, Any]]:
    """`<claim>/<piece name>` -> its `reused.json`, for every reused piece of the study folder `out`."""
    return {f"{path.parent.parent.name}/{path.parent.name}": json.loads(path.read_text())
            for path in sorted((out / "pieces").glob(f"*/*/{REUSED_FILE}"))}
