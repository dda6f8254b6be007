"""CausalMix as a library (docs/python-api.md): fit a model on proxy runs, recommend and predict
mixtures, featurize pools and run sweeps from a notebook, with the CLI's checks and errors.

    import causalmix
    model = causalmix.fit("runs.parquet")
    model.recommend(pool_features="features/")["mixture"]

Every part of the project lives under this one name (`causalmix.core`, `causalmix.causal`,
`causalmix.actors`, ...). An installed wheel holds them inside this folder (pyproject.toml maps
them there); a checkout keeps them at the repository's top, beside this folder, and so does the
tree `ray job submit --working-dir .` ships to the workers and the cluster image copies to /app:
there the checkout's root is searched too, so a module has one name either way.
"""
from __future__ import annotations

import importlib
import os

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_ROOT, "pyproject.toml")) and os.path.isdir(os.path.join(_ROOT, "core")):
    __path__.append(_ROOT)  # a checkout: causalmix.core is ROOT/core

__all__ = ["Model", "fit", "load_model", "pool_covariates", "featurize", "sweep", "read_runs",
           "import_regmix", "UserError", "SweepIncomplete"]


def __getattr__(name: str):
    # The API is imported on first use, so that importing one part (`causalmix.causal`, which
    # tests/test_layering.py imports without Ray) does not import the stages behind the API.
    if name in __all__:
        return getattr(importlib.import_module("causalmix.api"), name)
    raise AttributeError(f"module 'causalmix' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
