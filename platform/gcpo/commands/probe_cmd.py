"""`gcpo probe --space SPACE.yaml [--steps-off N] [--config YAML] [--preset NAME] [KEY=VALUE ...]`.

Does each switch of a search space change the update, in this regime? On one real batch of the config (sampled once
with the transformers engine in this process, golden answers injected as in training), with the policy moved
`--steps-off` optimiser steps off the batch's old log-probs, prints for every value of every grid or choice axis of
the space (and every named arm) the cosine and norm ratio between the gradient the update hands the optimiser under
that value and under the base config, and a verdict: `acts`, `acts (step size)`, `acts (scale only)` or
`no-op here` (`gcpo.standalone.probe`). The base is the space's `base`, then `--config`'s file under it, `--preset`
and the KEY=VALUE overrides on top (with nothing naming a preset: gcpo, as `gcpo train`). No Ray, no MLflow.
"""

from __future__ import annotations

import argparse

from gcpo.commands.common import add_config_arguments
from gcpo.console import PREFIX, add_verbose_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--space", metavar="SPACE.yaml",
                        help="the search space whose grid and choice axes (and named arms) are the switches to probe, "
                             "e.g. search_spaces/ablation_ga_kl_is.yaml; its `base` joins the config")
    parser.add_argument("--steps-off", type=int, default=1, metavar="N",
                        help="optimiser steps the policy takes on the batch (the base config's update) before the "
                             "gradients are measured, so ratios differ from 1 as in later epochs or mini-batches; "
                             "0 = on-policy, the regime of one epoch of one mini-batch (default: 1)")
    parser.add_argument("--calibrate-clip", action="store_true",
                        help="instead of the switches: the sequence-ratio clip range whose clip fraction on the second "
                             "mini-batch matches the token ratio's (gcpo.standalone.calibrate); --space optional")
    parser.add_argument("--batches", type=int, default=4, metavar="N",
                        help="probe batches for --calibrate-clip (prompt sampler seeds seed .. seed + N - 1; default 4)")
    parser.add_argument("--out", metavar="FILE.json", help="--calibrate-clip: also write the calibration as JSON")
    add_verbose_argument(parser)


def run(args: argparse.Namespace) -> int:
    from gcpo.config import ConfigError, load_config
    from gcpo.standalone.probe import base_values, format_report, probe_variants, run_probe
    from gcpo.standalone.warmstart import ensure_builtin_warm_start
    from gcpo.sweeps.space import load_space

    if args.steps_off < 0:
        raise ConfigError(f"--steps-off: must be >= 0, got {args.steps_off}")
    if args.calibrate_clip:
        return _calibrate(args)
    if args.space is None:
        raise ConfigError("--space: required (the space whose switches to probe), unless --calibrate-clip")
    space = load_space(args.space)
    values = base_values(space.base, args.preset, args.overrides, args.config is not None)
    cfg = load_config(args.config, values)
    variants, skipped = probe_variants(space, values, args.config)
    ensure_builtin_warm_start(cfg.model)  # smollm2-warmstart: made on first use, said
    r = cfg.rollout
    label = (f"gcpo probe {space.path.name}: preset {cfg.preset}, {r.prompts_per_step} prompts x {r.group_size}, "
             f"the policy {args.steps_off} step(s) off the batch's old log-probs")
    print(f"{PREFIX} probe: {len(variants)} values of {len({v.key for v in variants})} switches on one batch of "
          f"{cfg.model.name}", flush=True)
    base_metrics, rows = run_probe(cfg, variants, steps_off=args.steps_off)
    print(format_report(label, base_metrics, rows, skipped))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from gcpo.config import ConfigError, load_config
    from gcpo.standalone.calibrate import format_calibration, run_calibration
    from gcpo.standalone.probe import base_values
    from gcpo.standalone.warmstart import ensure_builtin_warm_start
    from gcpo.sweeps.space import load_space

    if args.batches < 1:
        raise ConfigError(f"--batches: must be >= 1, got {args.batches}")
    space_base = load_space(args.space).base if args.space else {}
    cfg = load_config(args.config, base_values(space_base, args.preset, args.overrides, args.config is not None))
    ensure_builtin_warm_start(cfg.model)
    r, t = cfg.rollout, cfg.trainer
    print(f"{PREFIX} probe --calibrate-clip: {args.batches} batches of {r.prompts_per_step} prompts x {r.group_size} "
          f"of {cfg.model.name}, one update at lr {t.lr:g} on each first mini-batch", flush=True)
    calibration = run_calibration(cfg, batches=args.batches, progress=lambda line: print(f"{PREFIX} {line}", flush=True))
    print(format_calibration(calibration, f"gcpo probe --calibrate-clip: preset {cfg.preset}, lr {t.lr:g}"))
    if args.out:
        Path(args.out).write_text(json.dumps(calibration.to_dict(), indent=2) + "\n")
    return 0
