"""Whether a fitted model may move the mixture at all (the second guard of the auto radius):
its held-out errors against those of the covariates alone, and the reason it may not.

A high out-of-fold R^2 is not evidence about the mixture: the data state alone can explain
most of y. Measured: docs/causal.md ("Evidence that the mixture matters").
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import nnls
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


def _covariate_distances(covariates: np.ndarray) -> np.ndarray:
    """Squared distances between runs in standardised covariates, inf on the diagonal."""
    sd = covariates.std(axis=0)
    Z = (covariates - covariates.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    d2 = (Z ** 2).sum(axis=1)[:, None] + (Z ** 2).sum(axis=1)[None, :] - 2.0 * Z @ Z.T
    np.fill_diagonal(d2, np.inf)
    return d2


def pair_partners(covariates: np.ndarray, seed: int = 0) -> np.ndarray:
    """For each run, the other run nearest it in standardised covariates (without covariates:
    a fixed random other run)."""
    n = len(covariates)
    if covariates.shape[1] == 0:
        perm = np.random.default_rng(seed).permutation(n)
        return perm[(np.argsort(perm) + 1) % n]
    return np.argmin(_covariate_distances(covariates), axis=1)


def pair_difference_mse(y: np.ndarray, predicted: np.ndarray, partners: np.ndarray) -> float:
    """Mean squared error of the predicted difference y_i - y_partner(i)."""
    return float(np.mean(((predicted - predicted[partners]) - (y - y[partners])) ** 2))


def neighbour_pairs(covariates: np.ndarray, k: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(i, j): each run i with its k nearest other runs j in standardised covariates (without
    covariates: k fixed random others), so a pair's outcome difference is mostly the mixture's."""
    n = len(covariates)
    k = max(1, min(k, n - 1))
    if covariates.shape[1] == 0:
        offsets = 1 + np.random.default_rng(seed).permutation(n - 1)[:k]  # k distinct others for every run
        return np.repeat(np.arange(n), k), ((np.arange(n)[:, None] + offsets[None, :]) % n).ravel()
    nearest = np.argsort(_covariate_distances(covariates), axis=1, kind="stable")[:, :k]
    return np.repeat(np.arange(n), k), nearest.ravel()


def difference_error(phi: np.ndarray, y: np.ndarray, heldout: np.ndarray, pairs) -> dict:
    """Split the held-out squared error of predicted differences between runs at similar
    covariates, e_ij^2 = ((f(i) - f(j)) - (y_i - y_j))^2, into a part that does not grow with the
    pair's distance in treatment features |phi_i - phi_j| (the run-to-run noise of both runs and
    what the covariates miss of the baseline: neither is an error of the returns) and a part per
    unit of squared distance (the error of the returns), by non-negative least squares
    e^2 = c0 + c1 |dphi|^2. The slope is raised by one standard error (pairs of one run share
    it: the error is counted once per run, not per pair), so a log that says little about it
    keeps the interval wide."""
    i, j = pairs
    squared = ((heldout[i] - heldout[j]) - (y[i] - y[j])) ** 2
    distance2 = ((phi[i] - phi[j]) ** 2).sum(axis=1)
    design = np.column_stack([np.ones_like(distance2), distance2])
    (intercept, slope), _ = nnls(design, squared)
    residual = squared - design @ np.array([intercept, slope])
    per_run = len(i) / max(len(np.unique(i)), 1)
    covariance = np.linalg.pinv(design.T @ design) * float(np.mean(residual ** 2)) * per_run
    return {"per_phi2": float(slope + np.sqrt(max(covariance[1, 1], 0.0))), "slope": float(slope),
            "intercept": float(intercept), "pairs": int(len(i)), "pair_mse": float(squared.mean())}


def attach_model_error(estimator, mixtures: np.ndarray, y: np.ndarray, heldout: np.ndarray,
                       covariates: np.ndarray, seed: int = 0) -> None:
    """Give a fitted estimator the error of its held-out predictions of *differences* between
    runs at similar covariates per unit of squared treatment-feature distance
    (`difference_error`), which its gain intervals add to the variance of its own parameters
    (`MixtureEstimator.gain_interval`): the parameters' variance assumes the model's form is
    right, and on a small noisy log or a shape the form misses it is not. Scaled by the step's
    squared length in treatment features, so a longer step carries a wider interval.
    Measured: docs/causal.md ("Trust radius")."""
    phi = estimator.featurizer_.transform(estimator._coords(mixtures))
    estimator.model_error_ = difference_error(phi, y, heldout, neighbour_pairs(covariates, seed=seed))
