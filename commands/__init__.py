"""One module per `launch.py` sub-command.

Each module defines `HELP` (one line), `add_arguments(parser)` and
`run(args) -> int`. Logic lives in the domain packages; these modules only parse,
call and print.
"""
