"""The `gcpo` command. Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args)`;
the table of subcommands and the parser built from it are in `gcpo.commands`.
"""

from __future__ import annotations

import importlib
import sys
import traceback

from gcpo.commands import build_parser


def main(argv: list[str] | None = None) -> int:
    from gcpo.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from gcpo import console

    with console.configured(getattr(args, "verbose", False)):
        try:
            return int(importlib.import_module(args._module).run(args) or 0)
        except Exception as e:  # one line (the root cause, also from inside a Ray worker); --verbose: the traceback
            if console.is_verbose():
                traceback.print_exc()
            if isinstance(console.root_cause(e), ConfigError):
                print(f"gcpo {args.command}: config error: {console.error_message(e)}", file=sys.stderr)
                return 2
            print(console.error_line(args.command, e), file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
