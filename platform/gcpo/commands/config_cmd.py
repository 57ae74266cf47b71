"""`gcpo config [--keys | --presets] [--config YAML] [--preset NAME] [KEY=VALUE ...]`."""

from __future__ import annotations

import argparse

from gcpo.commands.common import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--keys", action="store_true", help="list every valid dotted key with its default")
    parser.add_argument("--presets", action="store_true", help="print the preset table (Markdown)")


def run(args: argparse.Namespace) -> int:
    from gcpo.algorithms.presets import preset_table_markdown
    from gcpo.config import RunConfig, dump_yaml, to_flat_dict

    if args.presets:
        print(preset_table_markdown())
    elif args.keys:
        for key, value in to_flat_dict(RunConfig()).items():
            print(f"{key} = {value!r}")
    else:
        print(dump_yaml(config_from_args(args)), end="")
    return 0
