"""`gcpo study {plan,run,reuse,report,status} STUDY.yaml [KEY=VALUE ...] [--out DIR]`: an ablation study of named
claims (`studies/*.yaml`, `gcpo.studies`), planned before it is paid for and reported in words.

- `plan`: from a pilot (`--experiment E [--tracking-uri U]`: runs already in MLflow; default: this study's
  finished pieces) the seed and item variance of each claim's comparisons, then per claim the minimum
  detectable difference at the planned seeds and items (95% confidence after Holm and the looks rule, 80%
  power), the seeds its target difference needs, and the hours its trials take at the measured cost per trial.
- `run`: every trial as a resumable piece (one arm x one seed), seed by seed across the arms, one progress line
  with the study's ETA; `--until-decided` adds seeds in rounds (the file's `until_decided`) until every
  comparison is decided or the budget is spent. Stopped (Ctrl-C) or failed pieces resume on the next run.
- `reuse`: without training, write every pending piece whose run config equals a finished piece's from that
  piece's runs (`gcpo.studies.reuse`; `run` does it before each piece): for pieces run by another checkout.
  `--reuse-from STUDY.yaml DIR` (run and reuse, repeatable) also takes runs from another study's folder, when
  they ran with this study's code version; with plan and status, the runs it would take are not counted to train.
- `report`: OUT/report.md (arms' means with 95% intervals and IQM, differences with Holm-adjusted intervals and
  verdicts, factorial effects, learning curves), arms.csv, comparisons.csv, comparisons.png, <claim>/.
  `--readme FILE` also rewrites FILE's blocks marked `<!-- study NAME/CLAIM -->` ... `<!-- /study -->` with each
  claim's arms and comparisons (`gcpo.studies.summary`), so a document quotes the report's numbers.
- `status`: pieces done per claim and each comparison's verdict, without writing the report.

OUT defaults to reports/studies/<study name>. KEY=VALUE overrides join every trial's config (e.g.
`model.name=tiny`); the method is in docs/studies.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ACTIONS = ("plan", "run", "reuse", "report", "status")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gcpo.config import TrackingConfig
    from gcpo.console import add_verbose_argument

    parser.add_argument("action", choices=ACTIONS, help="plan its size, run it, fill in the pieces equal to finished "
                        "ones without training, write its report, or show status")
    parser.add_argument("study", metavar="STUDY.yaml", help="a study file, e.g. studies/paper_claims.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="run-config values for every trial")
    parser.add_argument("--out", metavar="DIR", help="the study's folder (default: reports/studies/<name>)")
    parser.add_argument("--experiment", "-e", help="plan: the pilot's MLflow experiment (default: the study's "
                                                   "finished pieces)")
    parser.add_argument("--tracking-uri", default=TrackingConfig.uri,
                        help=f"plan: the pilot's MLflow store or server (default: {TrackingConfig.uri})")
    parser.add_argument("--until-decided", action="store_true",
                        help="run: add seeds in rounds until every comparison is decided or the budget is spent")
    parser.add_argument("--tag", default="", help="run: suffix of the MLflow experiments (<study>-<claim><TAG>)")
    parser.add_argument("--keep-checkpoints", choices=("none", "all"), default="none",
                        help="run: keep each finished piece's checkpoints (default none: a study needs metrics)")
    parser.add_argument("--reuse-from", nargs=2, action="append", default=[], metavar=("STUDY.yaml", "DIR"),
                        help="run, reuse (plan, status: count them): also take runs from another study's folder "
                             "where a piece has the run config of one finished there (same code version only); "
                             "repeatable")
    parser.add_argument("--readme", type=Path, metavar="FILE",
                        help="report: also rewrite FILE's blocks marked <!-- study NAME/CLAIM --> ... <!-- /study --> "
                             "with each claim's arms and comparisons")
    parser.add_argument("--base", type=Path, help="run: where runs/ and a relative MLflow store live (default: .)")
    parser.add_argument("--address", metavar="ADDR", help="run: a Ray cluster to run on (default: a local Ray)")
    add_verbose_argument(parser)


def _out(args: argparse.Namespace, study) -> Path:
    return Path(args.out) if args.out else Path("reports") / "studies" / study.name


def _plan(args: argparse.Namespace, study, out: Path) -> int:
    from gcpo.studies.report import format_plan, plan_table
    from gcpo.studies.reuse import finished_runs, piece_fingerprints
    from gcpo.studies.runner import load_state, merged, piece_cost, pieces, space_file
    from gcpo.sweeps.space import load_space, trial_config

    configs = {n: trial_config(load_space(space_file(out, c), args.overrides), {}) for n, c in study.claims.items()}
    if args.experiment:
        from gcpo.sweeps.compare import load_comparison
        from gcpo.tracking.training_run import absolute_tracking_uri

        pilot = load_comparison(args.experiment, absolute_tracking_uri(args.tracking_uri, Path.cwd()))
        pilots = {name: pilot for name in study.claims}
    else:
        pilots = merged(study, out)
    if not pilots:
        print("gcpo study plan: no pilot: give --experiment, or run some pieces first (gcpo study run)")
        return 2
    pools = _reuse_pools(args, load_state(out).get("version"))  # their finished runs are not trained again
    # a trial's cost: this study's median piece, else the --reuse-from studies', else the pilot's steps
    cost = next((c for c in map(piece_cost, [load_state(f) for f in (out, *(p.out for p in pools))]) if c), None)
    if cost is None:
        step_s = next(iter(pilots.values())).runs["step_s"].mean()
        cost = float(step_s * next(iter(configs.values())).trainer.steps) if step_s == step_s else None
    fallback = next(iter(pilots.values()))
    plan = plan_table(study, {n: pilots.get(n, fallback) for n in study.claims},
                      {n: cfg.task.eval_size for n, cfg in configs.items()}, cost)
    out.mkdir(parents=True, exist_ok=True)
    plan.to_csv(out / "plan.csv", index=False)
    runs = len(set(piece_fingerprints(study, pieces(study), list(args.overrides)).values()) - finished_runs(pools))
    print(format_plan(study, plan, cost, runs=runs))
    print(f"\nplan: {out / 'plan.csv'}")
    return 0


def _run(args: argparse.Namespace, study, out: Path) -> int:
    from gcpo.cluster.runtime import init_ray
    from gcpo.studies.runner import check_version, is_done, load_state, pieces, run_study, study_version
    from gcpo.sweeps.runner import SweepInterrupted

    version = study_version(study, out, list(args.overrides))
    check_version(load_state(out), version)  # before Ray starts (run_study checks again and records it)
    pools = _reuse_pools(args, version)
    if args.until_decided or not all(is_done(out, p) for p in pieces(study)):
        init_ray(args.address)
    options = {"out": out, "overrides": list(args.overrides), "base": (args.base or Path.cwd()).resolve(),
               "tag": args.tag, "keep_checkpoints": args.keep_checkpoints, "until_decided": args.until_decided,
               "version": version, "reuse_from": pools}
    try:
        failed = run_study(study, options)
    except SweepInterrupted as e:
        print(f"gcpo study: stopped: {e}; run it again to go on")
        return 130
    if failed:
        print(f"gcpo study: {failed} piece(s) failed; run it again to retry them")
    return 1 if failed else _report(args, study, out)


def _reuse_pools(args: argparse.Namespace, version: dict | None) -> list:
    """The `--reuse-from` folders as pools, each checked to hold runs of `version` (None: any one version)."""
    from gcpo.studies.reuse import other_pool
    from gcpo.studies.runner import check_reuse_version

    pools = []
    for path, folder in args.reuse_from:
        check_reuse_version(Path(folder), version)
        pools.append(other_pool(path, Path(folder), list(args.overrides)))
    return pools


def _reuse(args: argparse.Namespace, study, out: Path) -> int:
    from gcpo.studies.reuse import Pool, piece_fingerprints, reuse_pending
    from gcpo.studies.runner import load_state, merge_claim, pieces, save_state

    state = load_state(out)
    pools = _reuse_pools(args, state.get("version"))
    if pools and state.get("version") is None:  # its first runs are theirs: so is its version
        state["version"] = load_state(pools[0].out)["version"]
        save_state(out, state)
    todo = pieces(study)
    written = reuse_pending(study, [Pool(out, todo, piece_fingerprints(study, todo, list(args.overrides))),
                                    *pools])
    for claim in {piece["claim"] for piece, _ in written}:
        merge_claim(out, claim)
    print(f"gcpo study reuse: {len(written)} piece(s) written from finished ones" if written else
          "gcpo study reuse: no pending piece has the run config of a finished one")
    return 0


def _report(args: argparse.Namespace, study, out: Path) -> int:
    from gcpo.studies.report import format_status, suspect_lines, suspect_pieces, write_study_report
    from gcpo.studies.runner import done_counts, merged

    comparisons = merged(study, out)
    done = done_counts(study, out)
    totals = (sum(d for d, _ in done.values()), sum(t for _, t in done.values()))
    _, table = write_study_report(study, out, comparisons, totals)
    print(format_status(study, table, done))
    for line in suspect_lines(suspect_pieces(out)):
        print(f"gcpo study report: {line}")
    print(f"\nreport: {out / 'report.md'} (arms.csv, comparisons.csv, comparisons.png, one folder per claim)")
    return _readme(args.readme, study, out) if args.readme else 0


def _readme(path: Path, study, out: Path) -> int:
    """`--readme FILE`: its blocks for this study rewritten from the report in `out` (checked before anything
    runs: `_readme_error`)."""
    from gcpo.studies.summary import read_blocks, update_blocks

    blocks = read_blocks(out, {name: claim.reference for name, claim in study.claims.items()})
    text, written = update_blocks(path.read_text(), study.name, blocks)
    path.write_text(text)
    print(f"{path}: the blocks of {', '.join(written)} rewritten from the report")
    return 0


def _readme_error(args: argparse.Namespace, study) -> str | None:
    """Why `--readme FILE` cannot be written, found at start-up (not after a study's hours of training): another
    action than run and report, no such file, a malformed marker, or no block marked for this study."""
    from gcpo.studies.summary import update_blocks

    if args.action not in ("run", "report"):
        return f"--readme applies to run and report, not {args.action}"
    try:
        _, written = update_blocks(Path(args.readme).read_text(), study.name, dict.fromkeys(study.claims, ""))
    except (OSError, ValueError) as e:
        return f"--readme {args.readme}: {e}"
    if not written:
        return f"--readme {args.readme}: it marks no block <!-- study {study.name}/CLAIM --> ... <!-- /study -->"
    return None


def _status(args: argparse.Namespace, study, out: Path) -> int:
    from gcpo.studies.analysis import study_comparisons
    from gcpo.studies.report import format_status, suspect_lines, suspect_pieces
    from gcpo.studies.reuse import piece_fingerprints, runs_to_train
    from gcpo.studies.runner import done_counts, load_state, merged, piece_cost, pieces

    table = study_comparisons(study, merged(study, out))
    done = done_counts(study, out)
    print(format_status(study, table, done))
    for line in suspect_lines(suspect_pieces(out)):
        print(f"gcpo study status: {line}")
    todo = pieces(study)
    state = load_state(out)
    cost, left = piece_cost(state), sum(t - d for d, t in done.values())
    pools = _reuse_pools(args, state.get("version"))
    runs = runs_to_train(todo, piece_fingerprints(study, todo, list(args.overrides)), out, pools)
    hours = f", about {cost * runs / 3600:.2f} h" if cost and runs else ""
    print(f"\n{left} planned pieces to run" + (f" ({runs} runs to train, the others reuse them)" if runs != left
                                                else "") + hours)
    return 0


def run(args: argparse.Namespace) -> int:
    from gcpo.studies.study_file import StudyError, load_study

    try:
        study = load_study(args.study)
    except StudyError as e:
        print(f"gcpo study: {e}")
        return 2
    problem = _readme_error(args, study) if args.readme else None
    if problem:
        print(f"gcpo study {args.action}: {problem}")
        return 2
    handler = {"plan": _plan, "run": _run, "reuse": _reuse, "report": _report, "status": _status}[args.action]
    try:
        return handler(args, study, _out(args, study))
    except ValueError as e:
        print(f"gcpo study {args.action}: {e}")
        return 2
