"""`report`: write the figures and tables of a finished run directory (not built yet: issue #5)."""
from core.errors import NotBuiltError

HELP = "write the figures and tables of a finished run directory [not built yet: issue #5]"


def add_arguments(parser) -> None:
    parser.description = "write the figures and tables of a finished run directory. This sub-command is not built yet (issue #5)."


def run(args) -> int:
    raise NotBuiltError("'report' is not built yet (issue #5); nothing was done")
