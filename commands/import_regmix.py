"""`import-regmix`: import RegMix's released CSVs into the runs table (not built yet: issue #5)."""
from core.errors import NotBuiltError

HELP = "import RegMix's released CSVs into the runs table [not built yet: issue #5]"


def add_arguments(parser) -> None:
    parser.description = "import RegMix's released CSVs into the runs table. This sub-command is not built yet (issue #5)."


def run(args) -> int:
    raise NotBuiltError("'import-regmix' is not built yet (issue #5); nothing was done")
