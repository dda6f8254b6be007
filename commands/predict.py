"""`predict`: predict y for mixtures and covariates from a fitted model (not built yet: issue #5)."""
from core.errors import NotBuiltError

HELP = "predict y for mixtures and covariates from a fitted model [not built yet: issue #5]"


def add_arguments(parser) -> None:
    parser.description = "predict y for mixtures and covariates from a fitted model. This sub-command is not built yet (issue #5)."


def run(args) -> int:
    raise NotBuiltError("'predict' is not built yet (issue #5); nothing was done")
