"""Whether a fitted model may move the mixture at all (the second guard of the auto radius):
its held-out errors against those of the covariates alone, and the reason it may not.

A high out-of-fold R^2 is not evidence about the mixture: the data state alone can explain
most of y. Measured: docs/causal.md ("Evidence that the mixture matters").
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


def pair_partners(covariates: np.ndarray, seed: int = 0) -> np.ndarray:
    """For each run, the other run nearest it in standardised covariates (without covariates:
    a fixed random other run)."""
    n = len(covariates)
    if covariates.shape[1] == 0:
        perm = np.random.default_rng(seed).permutation(n)
        return perm[(np.argsort(perm) + 1) % n]
    sd = covariates.std(axis=0)
    Z = (covariates - covariates.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    d2 = (Z ** 2).sum(axis=1)[:, None] + (Z ** 2).sum(axis=1)[None, :] - 2.0 * Z @ Z.T
    np.fill_diagonal(d2, np.inf)
    return np.argmin(d2, axis=1)


def pair_difference_mse(y: np.ndarray, predicted: np.ndarray, partners: np.ndarray) -> float:
    """Mean squared error of the predicted difference y_i - y_partner(i)."""
    return float(np.mean(((predicted - predicted[partners]) - (y - y[partners])) ** 2))


def attach_model_error(estimator, mixtures: np.ndarray, y: np.ndarray, heldout: np.ndarray,
                       partners: np.ndarray) -> None:
    """Give a fitted estimator the error of its held-out predictions of *differences*
    between runs at similar covariates, which its gain intervals then add to the variance
    of its own parameters (`MixtureEstimator.gain_interval`): the parameters' variance assumes
    the model's form is right, and on a small noisy log or a shape the form misses it is not
    (benchmarks/bench_truth.py: 64 noisy runs stepped to three times equal's regret with
    intervals above 0). The error is scaled per unit of the treatment features' distance
    between the paired runs, so a longer step carries a wider interval."""
    featurizer = estimator.featurizer_
    phi = featurizer.transform(estimator._coords(mixtures))
    distance = float(np.median(np.linalg.norm(phi - phi[partners], axis=1)))
    # the pair's difference carries the run-to-run noise of both runs: half its squared error
    # is what one predicted difference is off by, noise included (the conservative side)
    estimator.model_error_ = {"pair_mse": pair_difference_mse(y, heldout, partners),
                              "pair_phi_distance": max(distance, 1e-12)}
