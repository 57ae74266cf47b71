"""Running a study (`gcpo study run`): its trials in resumable pieces, in a balanced order, with one progress line.

A piece is one arm of one claim at one seed: a `gcpo.sweeps.runner.run_sweep` of the claim's search space
(written to `OUT/spaces/<claim>.yaml`) narrowed to that arm and seed (MLflow experiment `<study>-<claim><TAG>`,
one parent run per piece), read back with `load_comparison` and written to `OUT/pieces/<claim>/<arm>_s<seed>/`
(`gcpo compare`'s report). A piece whose report exists is done and never trained again; a failed or interrupted
piece writes none and is resumed (its sweep `--resume`d) by the next run; a piece whose trial was interrupted but
ended by Tune as if finished (`gcpo.sweeps.runner.trial_status`) writes none either, and its sweep is set aside so
that the next run starts it afresh (`set_aside`). The order is seed by seed: every arm of
every claim at a seed before the next seed, so a study stopped halfway is still a paired comparison.
`OUT/study.json` records each piece's wall-clock time (the ETA and `gcpo study plan`'s cost use it), its date,
machine and CPU flags (the report's cost table), and the looks taken.

One code version and one dtype for every piece: `study.json` records the study's `version` (a hash of every `.py`
file of the gcpo package, the git commit where there is one, torch / transformers / vLLM versions, and the dtype
the trials compute in on this machine, `model.dtype` resolved) when its first piece runs, and `gcpo study run`
refuses to run more pieces with another (`StudyVersionError`, naming what differs and the commit to check out),
before Ray starts. A study whose code must change starts a new folder (`--out`).

After each piece the finished pieces of its claim are merged (`load_reports`) into `OUT/<claim>/` (the layout of
benchmarks/results/paper_claims/).

`--until-decided`: the study's looks (`until_decided.looks`, `seeds_per_round` more seeds each) are run one after
another; after each the study is analysed (`gcpo.studies.analysis`, Holm at alpha / looks) and it stops when every
comparison is decided, when the next look would pass `budget_hours`, or after the last look.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from gcpo.studies.layout import is_done, piece_dir, pieces, space_file
from gcpo.studies.study_file import Study

STATE_FILE = "study.json"
# what must be the same for every piece of a study (the commit is recorded, not compared: the source hash is)
VERSION_KEYS = ("gcpo_source", "torch", "transformers", "vllm", "dtype")


class StudyVersionError(ValueError):
    """The code or dtype differs from the one the study's finished pieces ran with."""


def git_commit() -> str:
    """The checkout's commit (with `+changes` when files differ from it), or "none" outside git."""
    import subprocess

    package = Path(__file__).resolve().parents[1]
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=package, capture_output=True, text=True,  # noqa: E731
                                        timeout=20, check=True).stdout.strip()
        return run("rev-parse", "HEAD") + ("+changes" if run("status", "--porcelain", "--", ".") else "")
    except (OSError, subprocess.SubprocessError):
        return "none"


def code_version(dtype: str) -> dict[str, str]:
    """This code's version for `study.json` (module docstring); `dtype`: the trials' `model.dtype`."""
    from gcpo.eval_cache import environment, source_hash
    from gcpo.hardware import concrete_dtype

    env = environment(gpu=False)
    return {"gcpo_source": source_hash(Path(__file__).resolve().parents[1], ["."]), "commit": git_commit(),
            "torch": env["torch"], "transformers": env["transformers"], "vllm": env["vllm"],
            "dtype": concrete_dtype(dtype)}


def study_version(study: Study, out: Path, overrides: list[str]) -> dict[str, str]:
    """`code_version` with the dtype of the study's trials (its first claim's, with the command's overrides)."""
    from gcpo.sweeps.space import load_space, trial_config

    first = next(iter(study.claims.values()))
    return code_version(trial_config(load_space(space_file(out, first), overrides), {}).model.dtype)


def check_version(state: dict[str, Any], current: dict[str, str]) -> None:
    """Record `current` as the study's version, or raise `StudyVersionError` when its finished pieces ran
    with another."""
    recorded = state.get("version")
    if recorded is None:
        state["version"] = current
        return
    differ = [k for k in VERSION_KEYS if recorded.get(k) != current.get(k)]
    if differ:
        what = "; ".join(f"{k}: the study's {recorded.get(k)}, now {current.get(k)}" for k in differ)
        raise StudyVersionError(
            f"this study's {len(state['pieces'])} recorded pieces ran with another code version or dtype ({what}). "
            f"Every piece of a study runs with one: check out commit {recorded.get('commit', 'none')} to go on, "
            f"or start a new study folder (--out)")


def check_reuse_version(folder: Path, current: dict[str, str] | None) -> None:
    """Runs of another study folder (`--reuse-from`) are reused only when they ran with `current`, this study's
    version (None: this study has none yet, and takes that folder's); `StudyVersionError` names the difference."""
    theirs = load_state(folder).get("version")
    if theirs is None:
        raise StudyVersionError(f"{folder}: no study.json with a version: no finished runs to reuse there")
    differ = [k for k in VERSION_KEYS if current is not None and theirs.get(k) != current.get(k)]
    if differ:
        what = "; ".join(f"{k}: theirs {theirs.get(k)}, this study's {current.get(k)}" for k in differ)
        raise StudyVersionError(f"{folder}: its runs ran with another code version or dtype ({what}); a study "
                                f"reuses runs of its own version only (theirs: commit {theirs.get('commit')})")


def done_counts(study: Study, out: Path) -> dict[str, tuple[int, int]]:
    """claim -> (pieces done, planned pieces)."""
    todo = pieces(study)
    return {name: (sum(is_done(out, p) for p in todo if p["claim"] == name), sum(p["claim"] == name for p in todo))
            for name in study.claims}


def load_state(out: Path) -> dict[str, Any]:
    path = out / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {"pieces": {}, "looks": []}


def machine() -> dict[str, Any]:
    """Where a piece ran: platform, CPU model, cores, the CPU flags that matter (`gcpo.eval_cache.ISA_FLAGS`)."""
    from gcpo.eval_cache import cpu_model, present_cpu_flags

    return {"platform": platform.platform(), "processor": cpu_model(), "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "cpu_flags": present_cpu_flags()}


def save_state(out: Path, state: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    state["machine"] = machine()
    (out / STATE_FILE).write_text(json.dumps(state, indent=2, default=str) + "\n")


def piece_cost(state: dict[str, Any]) -> float | None:
    """The median wall-clock seconds of the finished pieces (None before the first): a piece slowed by other work
    on the machine moves it less than it would a mean."""
    times = [p["wall_s"] for p in state["pieces"].values() if not p.get("failed")]
    return float(statistics.median(times)) if times else None


def progress_line(done: int, total: int, piece: dict, wall_s: float, cost: float | None,
                  trainings: int | None = None) -> str:
    """`[study] 5/20 done (methods: gcpo, seed 1, 31s); ETA 7m45s for 15 more`; with `trainings` (the distinct
    runs left, fewer where pieces will be reused) the ETA is theirs: `ETA 6m12s for 15 more (12 to train)`."""
    left = total - done
    trained = left if trainings is None else trainings
    eta = "unknown" if cost is None else _duration(cost * trained)
    return (f"[study] {done}/{total} done ({piece['claim']}: {piece['arm']}, seed {piece['seed']}, "
            f"{wall_s:.0f}s); ETA {eta} for {left} more" + ("" if trained == left else f" ({trained} to train)"))


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def run_piece(study: Study, piece: dict, overrides: list[str], out: Path, base: Path, tag: str,
              keep_checkpoints: str) -> dict[str, Any]:
    """Run (or resume) one piece's sweep and write its report; returns its wall time and MLflow location."""
    from gcpo.sweeps.compare import load_comparison, write_report
    from gcpo.sweeps.runner import SWEEP_FILE, run_sweep, sweep_dir
    from gcpo.sweeps.space import load_space, trial_config
    from gcpo.training.fit import absolutize

    space = space_file(out, study.claims[piece["claim"]])
    experiment = f"{study.name}-{piece['claim']}{tag}"
    overrides = [*overrides, f"tracking.experiment={experiment}"]
    sweep = f"{experiment}_{piece['name']}"
    existing = sweep_dir(absolutize(trial_config(load_space(space, overrides), {}), base), sweep, base)
    started = time.time()
    outcome = run_sweep(space, overrides, name=sweep, resume=(existing / SWEEP_FILE).exists(), base=base,
                        seeds=[piece["seed"]], only=piece["only"], keep_checkpoints=keep_checkpoints)
    failed = sum(t["status"] != "ok" for t in outcome.trials)
    if not failed:  # no report for a failed piece: the next run retries it
        cmp = load_comparison(outcome.experiment, outcome.tracking_uri, parent_run_id=outcome.parent_run_id)
        write_report(cmp, piece_dir(out, piece))
    elif any(t["status"] == "interrupted" for t in outcome.trials):
        set_aside(existing)
    return {"wall_s": round(time.time() - started, 1), "failed": failed, "experiment": outcome.experiment,
            "parent_run_id": outcome.parent_run_id, "finished": time.strftime("%Y-%m-%d %H:%M", time.localtime()),
            "machine": machine()}


def set_aside(sweep: Path) -> Path:
    """Move a piece's sweep folder aside (`<name>.interrupted-<time>`), so that the next `gcpo study run` starts
    the piece afresh: Tune keeps an interrupted trial it took for an ended one as ended, and `--resume` would not
    run it again (`gcpo.sweeps.runner.trial_status`). Its MLflow runs stay, under their own parent run."""
    aside = sweep.with_name(f"{sweep.name}.interrupted-{time.strftime('%Y%m%d-%H%M%S')}")
    sweep.rename(aside)
    print(f"[study] {sweep.name}: a trial was interrupted and ended as if finished; its sweep is set aside "
          f"({aside}) and the piece starts afresh next time", flush=True)
    return aside


def merge_claim(out: Path, claim: str):
    """The finished pieces of `claim` merged into one comparison and written to OUT/<claim>/ (None: no
    piece yet)."""
    from gcpo.sweeps.compare import load_reports, write_report

    done = sorted(p for p in (out / "pieces" / claim).glob("*") if (p / "runs.csv").exists())
    if not done:
        return None
    cmp = load_reports(done, name=claim)
    write_report(cmp, out / claim, log_to_parent=False)
    return cmp


def merged(study: Study, out: Path) -> dict[str, Any]:
    """claim -> its merged comparison, for every claim with a finished piece."""
    found = {name: merge_claim(out, name) for name in study.claims}
    return {name: cmp for name, cmp in found.items() if cmp is not None}


def run_pieces(study: Study, todo: list[dict], options: dict[str, Any], state: dict[str, Any]) -> int:
    """Run the pending pieces of `todo` with the progress line; returns the failed pieces' count. Raises
    `SweepInterrupted` when a piece is stopped (its state is saved first)."""
    from gcpo.studies.reuse import Pool, piece_fingerprints, reuse_one, reuse_pending, runs_to_train

    out = options["out"]
    fingerprints = piece_fingerprints(study, todo, options["overrides"])
    pools = [Pool(out, todo, fingerprints), *options.get("reuse_from", [])]
    for claim in {piece["claim"] for piece, _ in reuse_pending(study, pools)}:
        merge_claim(out, claim)
    pending = [p for p in todo if not is_done(out, p)]
    done, failed = len(todo) - len(pending), 0
    print(f"[study] {study.name}: {done} of {len(todo)} pieces done; {len(pending)} to run", flush=True)
    for piece in pending:
        if reuse_one(study, piece, pools) is not None:
            done += 1  # an equal piece finished since: reused, never trained twice
            merge_claim(out, piece["claim"])
            continue
        result = run_piece(study, piece, options["overrides"], out, options["base"], options["tag"],
                           options["keep_checkpoints"])
        state["pieces"][f"{piece['claim']}/{piece['name']}"] = result
        save_state(out, state)
        failed += result["failed"]
        done += not result["failed"]
        merge_claim(out, piece["claim"])
        print(progress_line(done, len(todo), piece, result["wall_s"], piece_cost(state),
                            runs_to_train(todo, fingerprints, out, pools[1:])), flush=True)
    return failed


def _within_budget(study: Study, state: dict, next_pieces: int) -> bool:
    cost = piece_cost(state)
    if study.budget_hours is None or cost is None:
        return True
    spent = sum(p["wall_s"] for p in state["pieces"].values())
    return spent + cost * next_pieces <= study.budget_hours * 3600


def run_study(study: Study, options: dict[str, Any]) -> int:
    """Run the study's planned pieces, or with `options["until_decided"]` look after look until decided
    (module docstring). `options`: out, overrides, base, tag, keep_checkpoints, until_decided, and optionally
    version (this code's, `study_version`; checked against the study's first). Returns the failed pieces' count."""
    from gcpo.studies.analysis import study_comparisons
    from gcpo.studies.method import decided

    out, state = options["out"], load_state(options["out"])
    check_version(state, options.get("version") or study_version(study, out, options["overrides"]))
    looks = study.looks if options.get("until_decided") else 1
    for look in range(looks):
        todo = pieces(study, look)
        failed = run_pieces(study, todo, options, state)
        if failed or not options.get("until_decided"):
            return failed
        table = study_comparisons(study, merged(study, out))
        state["looks"] = [*state.get("looks", [])[:look], {"look": look + 1, "pieces": len(todo),
                                                            "decided": int(table["verdict"].isin(
                                                                ["beats", "no difference"]).sum()),
                                                            "comparisons": len(table)}]
        save_state(out, state)
        if decided(list(table["verdict"])):
            print(f"[study] look {look + 1}: every comparison decided; stopping", flush=True)
            return 0
        if look + 1 < looks and not _within_budget(study, state, len(pieces(study, look + 1)) - len(todo)):
            print(f"[study] look {look + 1}: the next look would pass the budget of {study.budget_hours} h; "
                  f"stopping", flush=True)
            return 0
        print(f"[study] look {look + 1} of {looks}: {len(table) - state['looks'][-1]['decided']} comparisons "
              f"undecided; adding seeds", flush=True)
    return 0
