"""`gcpo warmstart --out DIR | --builtin [--steps 60] [--batch 8] [--lr 2e-5] [--items 512] [--probe-prompts 64]
[--probe-group 4] [--force] [--probe-only] [--config YAML] [--preset NAME] [KEY=VALUE ...]`.

The warm-start recipe (`gcpo.standalone.warmstart`): supervised fine-tuning of `model.name` on the golden answers of
the task's warm-start split (disjoint from its RL training and held-out splits), saved as a Hugging Face folder,
then probed the way an RL run would see it: the success rate and the shares of all-wrong, mixed and all-correct
groups of G samples on the first RL training prompts, and held-out pass@1. Start a study from it with
`model.name=DIR`. The config arguments are `gcpo train`'s (the model, task, rollout and evaluation settings);
`--probe-only` probes a model already in DIR again (e.g. another G or `rollout.temperature`). `--builtin` makes
`model.name=smollm2-warmstart`, the built-in recipe in the model cache that the study spaces start from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gcpo.commands.common import add_config_arguments, config_from_args
from gcpo.console import PREFIX, add_verbose_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gcpo.standalone.warmstart import WarmStartSettings

    d = WarmStartSettings()
    parser.add_argument("--out", "-o", metavar="DIR", help="the folder to write the model into (required unless "
                                                          "--builtin)")
    parser.add_argument("--builtin", action="store_true",
                        help="make (or, with --probe-only, probe) model.name=smollm2-warmstart: the built-in recipe "
                             "on the default config, in the model cache (the study spaces start from it)")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"SFT updates (default {d.steps})")
    parser.add_argument("--batch", type=int, default=d.batch, help=f"items per update (default {d.batch})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate (default {d.lr:g})")
    parser.add_argument("--items", type=int, default=d.items,
                        help=f"warm-start items drawn (default {d.items}; cycled when steps x batch exceeds them)")
    parser.add_argument("--probe-prompts", type=int, default=d.probe_prompts,
                        help=f"RL training prompts probed (default {d.probe_prompts})")
    parser.add_argument("--probe-group", type=int, default=d.probe_group,
                        help=f"samples per probed prompt, G (default {d.probe_group})")
    parser.add_argument("--force", action="store_true", help="replace DIR if it exists and is not empty")
    parser.add_argument("--probe-only", action="store_true",
                        help="no SFT: probe the model already in DIR again (other G, temperature or task) and add "
                             "the probe to its gcpo_warmstart.json")
    add_config_arguments(parser)
    add_verbose_argument(parser)


def settings_from_args(args: argparse.Namespace):
    from gcpo.config import ConfigError
    from gcpo.standalone.warmstart import WarmStartSettings

    for flag in ("steps", "batch", "items", "probe_prompts", "probe_group"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')}: must be >= 1, got {getattr(args, flag)}")
    if args.lr <= 0:
        raise ConfigError(f"--lr: must be > 0, got {args.lr}")
    return WarmStartSettings(steps=args.steps, batch=args.batch, lr=args.lr, items=args.items,
                             probe_prompts=args.probe_prompts, probe_group=args.probe_group)


def run(args: argparse.Namespace) -> int:
    from gcpo.config import ConfigError
    from gcpo.standalone.export import check_out
    from gcpo.standalone.warmstart import probe_warm_start, warm_start

    cfg = config_from_args(args)
    settings = settings_from_args(args)
    say = lambda line: print(line, flush=True)  # noqa: E731
    if args.builtin:
        return _builtin(args, cfg, settings, say)
    if not args.out:
        raise ConfigError("--out: required (the folder to write the model into), unless --builtin")
    out = Path(args.out).expanduser().resolve()
    if args.probe_only:
        if not (out / "config.json").exists():
            raise ConfigError(f"--probe-only: {out} holds no model (config.json missing)")
        record = probe_warm_start(cfg, out, settings, say=say)
    else:
        check_out(out, args.force, [])
        record = warm_start(cfg, out, settings, say=say)
    _report(record, out)
    return 0


def _builtin(args: argparse.Namespace, cfg, settings, say) -> int:
    """--builtin: the built-in recipe into the model cache (refusing other SFT settings), then its probe."""
    from gcpo.config import ConfigError
    from gcpo.models import warmstart_dir
    from gcpo.standalone.warmstart import make_builtin_warm_start, probe_warm_start

    out = warmstart_dir()
    if not args.probe_only:
        if (out / "config.json").exists() and not args.force:
            raise ConfigError(f"--builtin: {out} is made already (--force makes it again, --probe-only probes it)")
        make_builtin_warm_start(say=say)
    elif not (out / "config.json").exists():
        raise ConfigError(f"--probe-only --builtin: {out} is not made yet (run gcpo warmstart --builtin)")
    _report(probe_warm_start(cfg, out, settings, say=say), out)
    return 0


def _report(record: dict, out: Path) -> None:
    p = record["probe"]
    print(f"\nwarm start ({record['seconds']:.0f}s): {p['prompts']} RL training prompts x G={p['group']}: success "
          f"{p['success']:.3f}, all-wrong {p['all_wrong']:.2f}, mixed {p['mixed']:.2f}, all-correct "
          f"{p['all_correct']:.2f}, format {p['format_rate']:.2f}")
    for key, value in record["held_out"].items():
        print(f"  {key:<40} {value:.3f}")
    print(f"{PREFIX} start a run from it: gcpo train model.name={out}", flush=True)
