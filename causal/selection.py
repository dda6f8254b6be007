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

The same out-of-fold errors then decide whether the winner may move the mixture at all
(`no_evidence_reason`): not when it predicts held-out runs no better than their mean, nor when
it does not beat the covariates alone by a paired test (`mixture_evidence`).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr, ttest_rel

from causal.estimators import CausalForestEstimator, LinearDMLEstimator, RegressionEstimator, poly_ridge
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


def _skip_reason(estimator, table: RunsTable, folds: int) -> str | None:
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

    scores, skipped, errors = {}, {}, {}
    for name, (cls, settings) in AUTO_CANDIDATES.items():
        candidate = make(cls, settings)
        reason = _skip_reason(candidate, table, folds)
        if reason:
            skipped[name] = reason
            continue
        predicted, used = cross_fitted_predictions(table, candidate, folds=folds, seed=seed)
        errors[name] = (predicted - table.y) ** 2
        mse = float(np.mean(errors[name]))
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
                            "scores": scores, "skipped": skipped,
                            "mixture_evidence": mixture_evidence(table, errors[chosen], folds=scores[chosen]["folds"],
                                                                 seed=seed)}
    return estimator


def _covariates_only_models(n_covariates: int) -> dict:
    """What predicts y without the mixture: the mean without covariates, else the nuisance
    families of the DML fits (linear, degree-2 polynomial ridge, random forest)."""
    from sklearn.dummy import DummyRegressor
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import RidgeCV

    if n_covariates == 0:
        return {"mean": DummyRegressor()}
    return {"linear": RidgeCV(alphas=np.logspace(-2, 4, 7)), "poly": poly_ridge(),
            "forest": RandomForestRegressor(n_estimators=100, min_samples_leaf=5, random_state=0)}


def mixture_evidence(table: RunsTable, model_errors: np.ndarray, *, folds: int, seed: int) -> dict:
    """Does the mixture help predict held-out runs beyond their covariates? The chosen model's
    out-of-fold squared errors against those of the best covariates-only model on the same
    folds, by a one-sided paired t-test. A small noisy log can fit a model whose R^2 is high
    because the covariates explain y while its returns are noise (structural regime (b):
    docs/causal.md, "Evidence that the mixture matters")."""
    from sklearn.model_selection import KFold, cross_val_predict

    X, y = table.covariates(), table.y
    cv = KFold(n_splits=folds, shuffle=True, random_state=seed)
    best_name, best_errors = None, None
    for name, model in _covariates_only_models(X.shape[1]).items():
        err = (cross_val_predict(model, X if X.shape[1] else np.zeros((len(y), 1)), y, cv=cv) - y) ** 2
        if best_errors is None or err.mean() < best_errors.mean():
            best_name, best_errors = name, err
    test = ttest_rel(best_errors, model_errors, alternative="greater")
    finite = bool(np.isfinite(test.pvalue))  # identical errors: no evidence either way
    return {"covariates_only": best_name, "covariates_only_oof_mse": float(best_errors.mean()),
            "model_oof_mse": float(model_errors.mean()), "t": float(test.statistic) if finite else 0.0,
            "p_value": float(test.pvalue) if finite else 1.0,
            "test": "one-sided paired t-test of out-of-fold squared errors"}


def no_evidence_reason(estimator, alpha: float = 0.1) -> str | None:
    """Why an auto-selected model must not move the mixture at all, or None: when even the best
    candidate predicts held-out runs no better than their mean (out-of-fold R^2 <= 0), or not
    significantly better (at level alpha) than the covariates alone, its returns are noise,
    however narrow its intervals look."""
    selection = getattr(estimator, "selection_", None)
    if not selection:
        return None
    r2 = selection["scores"][selection["chosen"]]["oof_r2"]
    if r2 <= 0:
        return (f"no step: the selected model ({selection['chosen']}) predicts held-out runs no better than "
                f"their mean (out-of-fold R^2 {r2:.3f})")
    evidence = selection.get("mixture_evidence")  # absent in models fitted before it existed
    if evidence and evidence["p_value"] >= alpha:
        return (f"no step: with the mixture, the selected model ({selection['chosen']}) predicts held-out runs "
                f"no better than the covariates alone at level {alpha:g} (out-of-fold MSE "
                f"{evidence['model_oof_mse']:.4g} against {evidence['covariates_only_oof_mse']:.4g} for "
                f"{evidence['covariates_only']}; one-sided paired t-test p = {evidence['p_value']:.3f})")
    return None
