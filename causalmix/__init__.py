"""CausalMix as a library (docs/python-api.md): fit a model on proxy runs, recommend and predict
mixtures, featurize pools and run sweeps from a notebook, with the CLI's checks and errors.

    import causalmix
    model = causalmix.fit("runs.parquet")
    model.recommend(pool_features="features/")["mixture"]
"""
from causalmix.api import (Model, SweepIncomplete, UserError, featurize, fit, import_regmix, load_model,
                           pool_covariates, read_runs, sweep)

__all__ = ["Model", "fit", "load_model", "pool_covariates", "featurize", "sweep", "read_runs",
           "import_regmix", "UserError", "SweepIncomplete"]
