"""Arguments shared by commands that take a run config."""

from __future__ import annotations

import argparse

from gcpo.algorithms.presets import PRESET_NAMES
from gcpo.config import RunConfig, load_config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="YAML", help="a run config file (YAML); optional")
    parser.add_argument("--preset", "-p", metavar="NAME",
                        help=f"an algorithm preset: {', '.join(PRESET_NAMES)}")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides, e.g. algorithm.kl_coef=0.01 trainer.steps=10")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return load_config(args.config, args.overrides, preset=args.preset)
