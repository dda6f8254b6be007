"""Optional features installed as extras (`pip install 'causalmix[tracking]'`): a flag that needs
one names it, instead of failing on an ImportError deep inside a run."""
from __future__ import annotations

import importlib.util

from causalmix.core.errors import UserError

EXTRAS = {"mlflow": "tracking", "wandb": "tracking", "lm_eval": "harness"}
"""Module: the extra of pyproject.toml that installs it."""


def require_extra(module: str, needed_for: str) -> None:
    """Refuse `needed_for` (e.g. "--tracking mlflow") when `module` is not installed, naming the
    extra that installs it."""
    if importlib.util.find_spec(module) is None:
        extra = EXTRAS[module]
        raise UserError(f"{needed_for} needs {module}, which is not installed: pip install "
                        f"'causalmix[{extra}]' (or `pip install -e \".[{extra}]\"` in a checkout)")
