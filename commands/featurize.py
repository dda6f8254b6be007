"""`featurize`: compute per-document features (normalized_loss, hes, style) of a pool (not built yet: issue #3)."""
from core.errors import NotBuiltError

HELP = "compute per-document features (normalized_loss, hes, style) of a pool [not built yet: issue #3]"


def add_arguments(parser) -> None:
    parser.description = "compute per-document features (normalized_loss, hes, style) of a pool. This sub-command is not built yet (issue #3)."


def run(args) -> int:
    raise NotBuiltError("'featurize' is not built yet (issue #3); nothing was done")
