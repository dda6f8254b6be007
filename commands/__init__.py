"""One module per `launch.py` sub-command.

Each module defines `add_arguments(parser)` and `run(args) -> int`; its one-line help is in
`launch.SUBCOMMANDS`, so that `causalmix --help` imports no command module. Logic lives in the domain packages; these modules only parse,
call and print.
"""
