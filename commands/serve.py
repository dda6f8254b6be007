"""`serve`: serve the recommender as a Ray Serve deployment (not built yet: issue #6)."""
from core.errors import NotBuiltError

HELP = "serve the recommender as a Ray Serve deployment [not built yet: issue #6]"


def add_arguments(parser) -> None:
    parser.description = "serve the recommender as a Ray Serve deployment. This sub-command is not built yet (issue #6)."


def run(args) -> int:
    raise NotBuiltError("'serve' is not built yet (issue #6); nothing was done")
