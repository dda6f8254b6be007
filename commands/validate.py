"""`validate`: train the target model on recommended and baseline mixtures and compare (not built yet: issue #5)."""
from core.errors import NotBuiltError

HELP = "train the target model on recommended and baseline mixtures and compare [not built yet: issue #5]"


def add_arguments(parser) -> None:
    parser.description = "train the target model on recommended and baseline mixtures and compare. This sub-command is not built yet (issue #5)."


def run(args) -> int:
    raise NotBuiltError("'validate' is not built yet (issue #5); nothing was done")
