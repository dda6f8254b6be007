"""Whether a fitted model may move the mixture at all: the evidence that the mixture matters.

`fit --estimator auto` fits `sieve-dml` (causal/sieve_dml.py), which chooses its treatment
basis, eps, the covariates its returns depend on and its nuisance learners by held-out error
on its own cross-fitted residuals (the R-loss: how well theta(X) . phi~ explains y~, which
scores returns rather than the outcome's level, so a model cannot win by predicting the
baseline g(X) well). The same held-out errors then decide whether the model may move the
mixture (`no_evidence_reason`): not when it predicts held-out runs no better than their mean,
nor when it does not beat the covariates alone by a paired test (`paired_evidence`).

The estimator selection this module held before (forests, linear-dml and regression scored
by out-of-fold outcome MSE) recorded candidate names the loader did not know
(`causal-forest-leaf20`) and took 30 to 90 s on 512 runs; docs/causal.md has the comparison.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import ttest_rel


def paired_evidence(covariates_only_errors: np.ndarray, model_errors: np.ndarray, *, covariates_only: str) -> dict:
    """One-sided paired t-test that the model's held-out squared errors are below those of the
    covariates-only prediction, run by run."""
    test = ttest_rel(covariates_only_errors, model_errors, alternative="greater")
    finite = bool(np.isfinite(test.pvalue))  # identical errors: no evidence either way
    return {"covariates_only": covariates_only, "covariates_only_oof_mse": float(covariates_only_errors.mean()),
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
