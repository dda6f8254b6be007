"""`fit --estimator auto`: choose the estimator by how well it predicts the *returns* of
held-out runs, then decide whether it may move the mixture at all.

Every candidate of AUTO_CANDIDATES (registry names of causal/fitting.py, which is what a
model directory records and its loader reads) is fitted out of fold, every one on the same
folds (sieve-dml's own leave-one-out predictions are not used here: its basis, eps and
covariates are chosen on all runs, which flatters it against a candidate refitted per fold;
on RegMix's runs that optimism picked it over the regression and lost 0.002 of Spearman
against LightGBM, docs/causal.md "Real swarms"). The criterion is the
out-of-fold error of the outcome *difference* between each run and the run nearest it in
covariates (`pair_difference_mse`): near pairs share their baseline g(X), so the difference
is what the mixtures did, which is what the policies compare; the plain outcome MSE (the
criterion before) is dominated by how well a candidate predicts g(X), and picked models
whose returns were wrong (docs/causal.md, "Beyond the log form").

The runner-up gets the share `rival_share_` that its held-out predictions get in the blend
with the winner's that best predicts the near pairs' differences; where that share is above 0
it is refitted on all runs too (`rival_`): the winner's gains and returns are the blend's, and
the two forms' disagreement widens the gain intervals (MixtureEstimator.gain_interval).

The same out-of-fold errors then decide whether the winner may move the mixture
(`no_evidence_reason`): not when it predicts held-out runs no better than their mean, nor when
it does not beat the covariates alone by a paired test (`mixture_evidence`).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from causalmix.causal.estimators import poly_ridge
from causalmix.causal.evidence import attach_model_error, pair_difference_mse, pair_partners, paired_evidence
from causalmix.causal.runs_table import RunsTable
from causalmix.core.errors import UserError
from causalmix.core.logs import get_logger

log = get_logger(__name__)

SELECTION_FOLDS = 4
# Fast candidates only: the causal forest (fit by name, the paper's) took 30 to 90 s on 512
# runs inside this loop and lost on every known-truth family (benchmarks/bench_truth.py).
# linear-dml (a candidate until this wave) is sieve-dml's `log` basis with every covariate
# and linear nuisances: it won no family of bench_truth.py and no real swarm, and its four
# out-of-fold fits were two thirds of auto's time (15 of 27 s CPU on 512 runs x 5 covariates).
AUTO_CANDIDATES = ("sieve-dml", "regression")


def _skip_reason(estimator, table: RunsTable, folds: int) -> str | None:
    train = table.n_runs - int(np.ceil(table.n_runs / folds))
    need = estimator.min_runs(len(table.domains), len(table.covariate_names), "log-only")
    if train < need:
        return f"a training fold has {train} runs; it needs {need}"
    return None


def _fold_predictions(estimator, W, X, y, train, test, threads: int | None) -> np.ndarray:
    from sklearn.base import clone
    from threadpoolctl import threadpool_limits

    # a worker process does not inherit the caller's thread limits, and more BLAS threads would
    # also change the sums' order, so a fold's predictions would differ from one process's
    with threadpool_limits(limits=threads):
        return clone(estimator).fit(W[train], X[train], y[train]).predict(W[test], X[test])


def cross_fitted_predictions(table: RunsTable, estimator, *, folds: int = 4, seed: int = 0,
                             label: str = "", jobs: int = 1, threads: int | None = None) -> tuple[np.ndarray, int]:
    """Out-of-fold predicted y for every run: `estimator` (cloned, unfitted) is fitted on the
    other folds and predicts the held-out one. More folds than asked are used when a training
    split would hold fewer runs than the estimator needs. With `jobs` > 1 the folds are fitted
    in that many processes (joblib), each at `threads` library threads (None: the libraries' own
    setting); the predictions are the same as in one process. Returns (predictions, folds used)."""
    import sys

    from joblib import Parallel, delayed
    from sklearn.model_selection import KFold
    from tqdm.auto import tqdm

    n = table.n_runs
    need = estimator.min_runs(len(table.domains), len(table.covariate_names))
    k = max(2, folds)
    while k < n and n - int(np.ceil(n / k)) < need:
        k += 1
    if n - int(np.ceil(n / k)) < need:
        raise UserError(f"cross-fitting needs at least {need + 1} runs for {type(estimator).__name__}; "
                        f"the runs table has {n}")
    W, X, y = table.mixtures(), table.covariates(), table.y
    predicted = np.empty(n)
    splits = list(KFold(n_splits=k, shuffle=True, random_state=seed).split(W))
    tasks = (delayed(_fold_predictions)(estimator, W, X, y, train, test, threads) for train, test in splits)
    parts = Parallel(n_jobs=min(jobs, k), return_as="generator")(tasks)  # in order, as each fold ends
    for (_, test), part in tqdm(zip(splits, parts), total=k, desc=f"cross-fit {label}".rstrip(), unit="fold",
                                file=sys.stderr, leave=False):
        predicted[test] = part
    return predicted, k


def select_estimator(table: RunsTable, make, *, folds: int = SELECTION_FOLDS, seed: int = 0, jobs: int = 1,
                     threads: int | None = None):
    """Fit every candidate (built by `make(name)`) out of fold, then the winner on all runs.
    Returns the fitted winner; its `selection_` holds every candidate's scores, the skipped
    ones with the reason, the choice and the mixture evidence."""
    partners = pair_partners(table.covariates(), seed)
    scores, skipped, errors, predictions = {}, {}, {}, {}
    for name in AUTO_CANDIDATES:
        candidate = make(name)
        reason = _skip_reason(candidate, table, folds)
        if reason:
            skipped[name] = reason
            continue
        predicted, used = cross_fitted_predictions(table, candidate, folds=folds, seed=seed, label=name,
                                                   jobs=jobs, threads=threads)
        errors[name], predictions[name] = (predicted - table.y) ** 2, predicted
        scores[name] = _held_out_scores(table.y, predicted, partners, used)
    if not scores:
        raise UserError(f"fit --estimator auto: no candidate can be fitted out of fold; the runs table has "
                        f"{table.n_runs} runs: {skipped}")
    chosen = min(scores, key=lambda k: scores[k]["pair_mse"])
    estimator = make(chosen).fit(table.mixtures(), table.covariates(), table.y)
    attach_model_error(estimator, table.mixtures(), table.y, predictions[chosen], table.covariates(), seed)
    runner_up = min((name for name in scores if name != chosen), key=lambda k: scores[k]["pair_mse"], default=None)
    share = 0.0 if runner_up is None else rival_share(table.y, predictions[chosen], predictions[runner_up], partners)
    if share > 0:
        # the other functional form, fitted on the same runs: where the two disagree on a gain,
        # the chosen form's own variance cannot say which is right (MixtureEstimator.gain_interval).
        # At share 0 the blend is the chosen form alone, so the runner-up is not refitted.
        estimator.rival_ = make(runner_up).fit(table.mixtures(), table.covariates(), table.y)
        estimator.rival_.__dict__.pop("model_error_", None)
        estimator.rival_share_ = share
    estimator.selection_ = {
        "criterion": "out-of-fold error of the outcome difference between runs at similar covariates",
        "folds": folds, "chosen": chosen, "rival": runner_up, "rival_share": share,
        "scores": scores, "skipped": skipped,
        "mixture_evidence": mixture_evidence(table, errors[chosen], folds=scores[chosen]["folds"], seed=seed)}
    return estimator


def _held_out_scores(y: np.ndarray, predicted: np.ndarray, partners: np.ndarray, folds: int) -> dict:
    mse = float(np.mean((predicted - y) ** 2))
    return {"pair_mse": pair_difference_mse(y, predicted, partners), "oof_mse": mse,
            "oof_r2": float(1.0 - mse / max(float(np.var(y)), 1e-300)),
            "oof_spearman": float(spearmanr(predicted, y).statistic), "folds": folds}


def attach_held_out_evidence(estimator, table: RunsTable, unfitted, *, name: str, folds: int = SELECTION_FOLDS,
                             seed: int = 0, jobs: int = 1, threads: int | None = None) -> None:
    """Give an estimator fitted by name on `table` what an auto-selected one carries, from
    out-of-fold fits of `unfitted`: the held-out error of its predicted differences in its gain
    intervals (`attach_model_error`) and its `selection_` (held-out scores and the evidence
    that the mixture matters, which the auto radius's guard reads). Without them `regression`'s
    90 % interval held the true gain on 2 of 15 of bench_truth's saturating targets, and at 64
    noisy runs its mean regret was 1.4 to 4.1 per family (equal: 1) (docs/causal.md, "Named
    estimators"). A table too small to hold a run out keeps the parameters' variance alone."""
    try:
        predicted, used = cross_fitted_predictions(table, unfitted, folds=folds, seed=seed, label=name,
                                                   jobs=jobs, threads=threads)
    except UserError as exc:
        log.warning("%s: the gain intervals carry the parameters' variance only (no held-out model error): %s",
                    name, exc)
        return
    attach_model_error(estimator, table.mixtures(), table.y, predicted, table.covariates(), seed)
    estimator.selection_ = {
        "criterion": f"out-of-fold fits of {name} (fitted by name)", "folds": folds, "chosen": name,
        "rival": None, "rival_share": 0.0, "skipped": {},
        "scores": {name: _held_out_scores(table.y, predicted, pair_partners(table.covariates(), seed), used)},
        "mixture_evidence": mixture_evidence(table, (predicted - table.y) ** 2, folds=used, seed=seed)}


def rival_share(y: np.ndarray, chosen: np.ndarray, rival: np.ndarray, partners: np.ndarray) -> float:
    """The weight in [0, 1] of the runner-up's out-of-fold predictions in the blend
    (1 - s) chosen + s rival that best predicts the held-out near pairs' differences (the
    selection criterion, in closed form: least squares in one weight, then clipped)."""
    dy, da, db = y - y[partners], chosen - chosen[partners], rival - rival[partners]
    denominator = float(np.sum((db - da) ** 2))
    if denominator <= 0:
        return 0.0
    return float(np.clip(np.sum((dy - da) * (db - da)) / denominator, 0.0, 1.0))


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
    return paired_evidence(best_errors, model_errors, covariates_only=best_name)
