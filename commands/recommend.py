"""`recommend`: recommend a mixture for a pool from a fitted model (not built yet: issue #5)."""
from core.errors import NotBuiltError

HELP = "recommend a mixture for a pool from a fitted model [not built yet: issue #5]"


def add_arguments(parser) -> None:
    parser.description = "recommend a mixture for a pool from a fitted model. This sub-command is not built yet (issue #5)."


def run(args) -> int:
    raise NotBuiltError("'recommend' is not built yet (issue #5); nothing was done")
