"""The Python API (docs/python-api.md): what the CLI does, callable from a notebook or a
pipeline, with the CLI's checks. Bad input raises `UserError` (the CLI prints it and exits 2);
nothing here exits the process, prints results or switches the matplotlib backend."""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Mapping

import pandas as pd

from causalmix.actors.featurize.driver import FeaturizeConfig, featurize as run_featurize
from causalmix.causal.covariates import covariates_from_features, pool_covariates as means
from causalmix.causal.predict import predict_table
from causalmix.causal.runs_table import import_regmix as convert, read_runs_table, validate_runs_frame
from causalmix.core.config import load_config, read_json_file
from causalmix.core.errors import SweepIncomplete, UserError
from causalmix.design.sweep_config import SweepConfig
from causalmix.features.features_io import read_features

# Deferred on purpose, so that importing this module does not load ray, scikit-learn and scipy: the
# function-local imports (of these libraries or of this project's modules that import them).

PathLike = str | Path


class Model:
    """A fitted CausalMix model (the object a `fit` model directory holds)."""

    def __init__(self, fitted, *, path: Path | None = None, fit_record: dict | None = None):
        self.fitted = fitted
        """causal.model_dir.FittedMixtureModel: the estimator and what it was fitted on."""
        self.path = path
        """Its model directory (None: fitted in memory and not saved)."""
        self.fit_record = fit_record or {}
        """What `fit` reports: estimator chosen, out-of-fold scores, n_runs, fit_s."""

    @property
    def domains(self) -> list[str]:
        return list(self.fitted.domains)

    @property
    def covariate_names(self) -> list[str]:
        return list(self.fitted.covariate_names)

    def __repr__(self) -> str:
        return (f"Model({self.fitted.estimator_name}, {len(self.domains)} domains, "
                f"{len(self.covariate_names)} covariates, {self.fitted.n_runs} runs)")

    def recommend(self, covariates: Mapping[str, float] | PathLike | None = None, *,
                  pool_features: PathLike | None = None, policy: str = "analytic",
                  trust_radius: float | str = "auto", reference: str | Mapping[str, float] = "equal",
                  alpha: float = 0.1, top_k: int | None = None, seed: int = 0,
                  constraints=None) -> dict:
        """The mixture for a pool, as `recommend` prints it: `{"mixture": {domain: weight},
        "expected_gain", "interval", "support", ...}`. Give the pool's covariates ({name:
        value}, or the JSON file of them) or its features (`pool_features`: a `featurize`
        folder or Parquet file). `constraints`: a mixture_space.MixtureBounds."""
        if (covariates is None) == (pool_features is None):
            raise UserError("recommend: give covariates or pool_features (one of them)")
        if pool_features is not None:
            covariates = pool_covariates(pool_features, self.covariate_names)
        elif not isinstance(covariates, Mapping):
            covariates = read_json_file(str(covariates), "covariates")
        return self.fitted.recommend(covariates, policy=policy, trust_radius=trust_radius,
                                     reference=reference, alpha=alpha, top_k=top_k, seed=seed,
                                     constraints=constraints)

    def predict(self, runs: PathLike | pd.DataFrame) -> pd.DataFrame:
        """Predicted y of every row (mixture + covariates) of a runs table: run_id, y_pred."""
        table = (validate_runs_frame(runs, where="runs", require_y=False) if isinstance(runs, pd.DataFrame)
                 else read_runs_table(runs, require_y=False))

        return predict_table(self.fitted, table, where=f"runs {table.source}")


def config_from_settings(cls, settings: Mapping, what: str):
    """`cls` from the API's keyword settings; unlike the CLI's namespace, every key must be a field."""

    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise UserError(f"{what}: unknown setting(s) {unknown}; known: {sorted(fields)}")
    return load_config(cls, None, settings)


def load_model(path: PathLike) -> Model:
    """A model directory written by `fit` (a pickle inside: load only directories you trust,
    or set CAUSALMIX_MODEL_KEY; see README)."""
    from causalmix.causal.model_dir import load_model_dir

    return Model(load_model_dir(path), path=Path(path))


def fit(runs: PathLike | pd.DataFrame, *, out: PathLike | None = None, overwrite: bool = False,
        **settings) -> Model:
    """Fit the causal model on a runs table (a Parquet/CSV path or a DataFrame), as `fit` does.
    `settings` are FitConfig fields (causal/fitting.py: estimator, seed, treatment_featurizer,
    objective, ...). With `out` the model directory is written too."""
    from causalmix.causal.fitting import FitConfig
    from causalmix.causal.fitting import fit_and_save

    config = config_from_settings(FitConfig, settings, "fit")
    if not isinstance(runs, pd.DataFrame):
        if out is not None:
            record = fit_and_save(str(runs), str(out), config, overwrite=overwrite)
            return Model(load_model(out).fitted, path=Path(out), fit_record=record)
        with tempfile.TemporaryDirectory(prefix="causalmix-fit-") as tmp:
            record = fit_and_save(str(runs), str(Path(tmp) / "model"), config)
            return Model(load_model(Path(tmp) / "model").fitted, fit_record=record)
    validate_runs_frame(runs, where="runs (DataFrame)", require_y=config.objective is None)
    with tempfile.TemporaryDirectory(prefix="causalmix-runs-") as tmp:
        path = Path(tmp) / "runs.parquet"
        runs.to_parquet(path)
        return fit(path, out=out, overwrite=overwrite, **settings)


def pool_covariates(features: PathLike, names: list[str] | None = None) -> dict[str, float]:
    """A pool's covariates (per-domain means of its document features) from a `featurize` folder
    or a features Parquet file; `names` (a model's covariate_names) picks and checks them."""
    if names is not None:
        return covariates_from_features(str(features), list(names))
    frame = read_features(features, "pool features")
    feature_cols = [c for c in frame.columns if c not in ("doc_id", "domain", "n_tokens")
                    and pd.api.types.is_numeric_dtype(frame[c])]
    return means(frame, sorted(set(frame["domain"].astype(str))), feature_cols, where=f"pool features {features}")


def featurize(pool: PathLike, model: str, out: PathLike, **settings) -> Path:
    """Per-document features of a pool (Ray Data actor pool, as `featurize`); returns `out`.
    `settings`: FeaturizeConfig fields (commands/featurize.py). Starts a local Ray unless one
    is up or RAY_ADDRESS is set; it stays up for the next call (`ray.shutdown()` ends it)."""
    run_featurize(config_from_settings(FeaturizeConfig, {**settings, "pool": str(pool), "model": model,
                                                 "out": str(out)}, "featurize"))
    return Path(out)


def sweep(pool: PathLike, features: PathLike, model: str, out: PathLike, *, runs: int = 24,
          **settings) -> Path:
    """The proxy-run sweep (Ray Tune, as `sweep`); returns the run directory (runs.parquet,
    sweep.json, ...). `settings`: SweepConfig fields (actors/sweep/driver.py, e.g. tracking="mlflow",
    adaptive=0.5) and `proxy={...}` (ProxyConfig fields). Raises SweepIncomplete (with the
    summary) when runs failed or the sweep was interrupted."""
    from causalmix.actors.sweep.driver import run_sweep

    proxy = dict(settings.pop("proxy", {}) or {})
    cfg = config_from_settings(SweepConfig, {**settings, "pool": str(pool), "features": str(features), "out": str(out),
                                     "runs": runs, "proxy": {**proxy, "model": model}}, "sweep")
    summary = run_sweep(cfg)
    if summary["status"] != "ok":
        raise SweepIncomplete(summary)
    return Path(out)


def read_runs(path: PathLike) -> pd.DataFrame:
    """A runs table (Parquet or CSV) after the checks every command applies."""
    return read_runs_table(path).frame


def import_regmix(mixtures: PathLike, losses: PathLike, *, target: str = "mean") -> pd.DataFrame:
    """RegMix's released CSVs as a runs table (y = -loss of `target`, or the mean of all)."""
    return convert(str(mixtures), str(losses), target=target)


__all__ = ["Model", "fit", "load_model", "pool_covariates", "featurize", "sweep", "read_runs",
           "import_regmix", "UserError", "SweepIncomplete"]
