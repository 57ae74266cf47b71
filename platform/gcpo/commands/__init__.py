"""One module per `gcpo` subcommand: `add_arguments(parser)` and `run(args) -> exit code`."""
