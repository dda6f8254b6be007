"""`fit`: fit a causal model (CausalForestDML by default) on a runs table (not built yet: issue #5)."""
from core.errors import NotBuiltError

HELP = "fit a causal model (CausalForestDML by default) on a runs table [not built yet: issue #5]"


def add_arguments(parser) -> None:
    parser.description = "fit a causal model (CausalForestDML by default) on a runs table. This sub-command is not built yet (issue #5)."


def run(args) -> int:
    raise NotBuiltError("'fit' is not built yet (issue #5); nothing was done")
