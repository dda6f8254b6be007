"""`fit --estimator auto`: choose the estimator by its out-of-fold outcome error.

The criterion is the K-fold out-of-fold mean squared error of each candidate's predicted y
(`cross_fitted_predictions`): a candidate is fitted on K-1 folds and predicts the runs of the
held-out fold from their mixtures and covariates. Why this and not econml's `RScorer`: the
policies rank mixtures by theta(x) . (phi(T1) - phi(T0)), a difference of predicted outcomes
at one pool's covariates, and the held-out outcome is exactly what such a difference is made
of. `RScorer` scores theta against residuals of one shared nuisance fit, so it cannot compare
a candidate that has no nuisances (the `regression` ablation) and it rewards a theta for
agreeing with that fit's errors. Measured on the structural benchmark and RegMix's runs:
docs/causal.md ("Estimator selection").
"""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from causal.estimators import CausalForestEstimator, LinearDMLEstimator, RegressionEstimator
from causal.runs_table import RunsTable

SELECTION_FOLDS = 4
# name -> (estimator class, its settings); every candidate shares the fit config's featurizer,
# nuisance models and seed. The two forests differ in how local theta(x) may be: leaves of 5
# runs follow the data state closely, leaves of 20 average it over more runs.
AUTO_CANDIDATES = {
    "causal-forest": (CausalForestEstimator, {"min_samples_leaf": 5}),
    "causal-forest-leaf20": (CausalForestEstimator, {"min_samples_leaf": 20}),
    "linear-dml": (LinearDMLEstimator, {}),
    "regression": (RegressionEstimator, {}),
}


def _skip_reason(name: str, estimator, table: RunsTable, folds: int) -> str | None:
    n_cov = len(table.covariate_names)
    if isinstance(estimator, CausalForestEstimator) and n_cov == 0:
        return "no covariates: the forest cannot split, and linear-dml fits the same constant theta"
    train = table.n_runs - -(-table.n_runs // folds)
    need = estimator.min_runs(len(table.domains), n_cov, "log-only")
    if train < need:
        return f"a training fold has {train} runs; it needs {need}"
    return None


def select_estimator(table: RunsTable, make, *, folds: int = SELECTION_FOLDS, seed: int = 0):
    """Fit every candidate of AUTO_CANDIDATES (built by `make(cls, settings)`) out of fold,
    then the winner on all runs. Returns the fitted winner; its `selection_` attribute holds
    every candidate's score, the skipped ones with the reason, and the choice."""
    from causal.fitting import cross_fitted_predictions

    scores, skipped = {}, {}
    for name, (cls, settings) in AUTO_CANDIDATES.items():
        candidate = make(cls, settings)
        reason = _skip_reason(name, candidate, table, folds)
        if reason:
            skipped[name] = reason
            continue
        predicted, used = cross_fitted_predictions(table, candidate, folds=folds, seed=seed)
        mse = float(np.mean((predicted - table.y) ** 2))
        scores[name] = {"oof_mse": mse, "oof_r2": float(1.0 - mse / max(float(np.var(table.y)), 1e-300)),
                        "oof_spearman": float(spearmanr(predicted, table.y).statistic), "folds": used}
    if not scores:
        from core.errors import UserError

        raise UserError(f"fit --estimator auto: no candidate can be fitted out of fold; the runs table has "
                        f"{table.n_runs} runs: {skipped}")
    chosen = min(scores, key=lambda k: scores[k]["oof_mse"])
    cls, settings = AUTO_CANDIDATES[chosen]
    estimator = make(cls, settings).fit(table.mixtures(), table.covariates(), table.y)
    estimator.selection_ = {"criterion": "out-of-fold outcome MSE", "folds": folds, "chosen": chosen,
                            "scores": scores, "skipped": skipped}
    return estimator


def no_evidence_reason(estimator) -> str | None:
    """Why an auto-selected model must not move the mixture at all, or None: when even the best
    candidate predicts held-out runs no better than their mean (out-of-fold R^2 <= 0), its
    returns are noise, however narrow its intervals look."""
    selection = getattr(estimator, "selection_", None)
    if not selection:
        return None
    r2 = selection["scores"][selection["chosen"]]["oof_r2"]
    if r2 > 0:
        return None
    return (f"no step: the selected model ({selection['chosen']}) predicts held-out runs no better than "
            f"their mean (out-of-fold R^2 {r2:.3f})")
