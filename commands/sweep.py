"""`sweep`: run the Dirichlet sweep of proxy SFT runs on Ray Tune (not built yet: issue #4)."""
from core.errors import NotBuiltError

HELP = "run the Dirichlet sweep of proxy SFT runs on Ray Tune [not built yet: issue #4]"


def add_arguments(parser) -> None:
    parser.description = "run the Dirichlet sweep of proxy SFT runs on Ray Tune. This sub-command is not built yet (issue #4)."


def run(args) -> int:
    raise NotBuiltError("'sweep' is not built yet (issue #4); nothing was done")
