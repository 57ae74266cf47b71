"""`gcpo config [--keys | --presets] [--config YAML] [--preset NAME] [KEY=VALUE ...]`."""

from __future__ import annotations

import argparse

from gcpo.commands.common import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--keys", action="store_true",
                        help="list every valid dotted key with its default (and its allowed values, for a choice)")
    parser.add_argument("--presets", action="store_true", help="print the preset table (Markdown)")


def key_choices(cls, prefix: str = "") -> dict[str, tuple]:
    """The allowed values of every choice (`Literal`) key under the config dataclass `cls`, by dotted key."""
    import dataclasses
    import typing

    out: dict[str, tuple] = {}
    for name, tp in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(tp):
            out.update(key_choices(tp, f"{prefix}{name}."))
        elif typing.get_origin(tp) is typing.Literal:
            out[f"{prefix}{name}"] = typing.get_args(tp)
    return out


def run(args: argparse.Namespace) -> int:
    from gcpo.algorithms.presets import preset_table_markdown
    from gcpo.config import RunConfig, dump_yaml, to_flat_dict

    if args.presets:
        print(preset_table_markdown())
    elif args.keys:
        choices = key_choices(RunConfig)
        for key, value in to_flat_dict(RunConfig()).items():
            allowed = f"  # one of {', '.join(map(str, choices[key]))}" if key in choices else ""
            print(f"{key} = {value!r}{allowed}")
    else:
        print(dump_yaml(config_from_args(args)), end="")
    return 0
