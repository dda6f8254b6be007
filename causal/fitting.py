"""Fit configuration and the fit stage itself (`fit_and_save`: a runs table in, a model
directory out), which `launch.py fit`, the demo and the Python API call. The estimators it can
make are named in causal/registry.py."""
from __future__ import annotations

import dataclasses
import time

from sklearn.base import clone
from threadpoolctl import threadpool_limits

from causalmix.causal.estimators import CausalForestEstimator, LinearDMLEstimator, RegressionEstimator
from causalmix.causal.featurizers import TREATMENT_FEATURIZERS
from causalmix.causal.model_dir import CHECKSUMS, MODEL_JSON, FittedMixtureModel, save_model_dir
from causalmix.causal.objective import Objective
from causalmix.causal.regmix import RegMixEstimator
from causalmix.causal.registry import ESTIMATORS, estimator_name
from causalmix.causal.selection import attach_held_out_evidence, select_estimator
from causalmix.causal.sieve_dml import SieveDMLEstimator, covariate_domains
from causalmix.causal.runs_table import RunsTable, read_runs_table_with_objective
from causalmix.core.atomic import check_output_path
from causalmix.core.errors import UserError
from causalmix.core.logs import get_logger

log = get_logger(__name__)

# Named estimators fitted four more times out of fold, so that they carry what an auto-selected
# model does: the held-out model error in their intervals and the evidence guard
# (causal.selection.attach_held_out_evidence). sieve-dml has its own (leave-one-out final stage),
# and RegMix's top-k policy reads no interval.
CROSS_FITTED_ERROR = ("causal-forest", "linear-dml", "regression")

@dataclasses.dataclass
class FitConfig:
    estimator: str = "auto"
    """auto (default: the candidate of causal/selection.py whose held-out return predictions
    are best, among sieve-dml and regression), sieve-dml (DML with a ridge-shrunk basis expansion of the
    mixture, screened covariates and flexible nuisances), causal-forest (CausalForestDML, the
    paper's), linear-dml, regression (no orthogonalisation), or regmix (the RegMix LightGBM
    baseline). Every one but regmix carries its held-out model error in its gain intervals and
    keeps the reference without held-out evidence that the mixture matters (the forest,
    linear-dml and regression from four more out-of-fold fits)."""
    seed: int = 0
    """Random state of the estimator (forest, cross-fitting folds, LightGBM)."""
    treatment_featurizer: str = "auto"
    """phi(T) for the final stage: auto (log, log-only or log-pairs, chosen by CV), linear, log
    ([T, log(w+eps)]), log-only (log(w+eps)), log-pairs (log plus products of the log terms)
    or sqrt; see docs/causal.md."""
    featurizer_eps: float | str = "auto"
    """eps of the log / sqrt treatment featurizer, or auto (chosen by the featurizer's CV among
    0.003, 0.01, 0.03)."""
    reference_domain: str | None = None
    """Domain whose weight the K-1 treatment coordinates are measured against; default: the
    domain with the largest mean weight in the runs table."""
    cv: int = 3
    """Cross-fitting folds of the DML nuisance models."""
    n_estimators: int | None = None
    """Trees of the causal forest (a multiple of 4; default 200), or boosting rounds for regmix
    (default 1000); None: the estimator's default."""
    nuisance_model: str = "auto"
    """Nuisance models E[Y|X], E[phi(T)|X]: 'auto' (chosen by CV among linear, poly, forest),
    or one of 'linear', 'poly', 'forest'."""
    objective: dict | None = None
    """The objective `y` is recomputed with before fitting (causal/objective.py form), resolved
    (its table statistics filled in) once fitted; None: the runs table's own `y` column."""
    threads: int = 1
    """BLAS/OpenMP threads of the fit's numerical libraries. The fit's matrices are small (runs x
    basis columns), where more threads cost more in synchronisation than they save: 512 runs x 24
    covariates fitted in 20 s at 1 thread and 151 s at the libraries' default on a 2-core machine
    with other work running (benchmarks/bench_real_swarms.py times the fit)."""

    jobs: int = 1
    """Processes fitting the out-of-fold fits (`auto`'s candidates, and the held-out fits of an
    estimator fitted by name) side by side, each at `threads` threads; the model is the same
    whatever the number. A fit is otherwise one process: set this to the cores the fit may use
    (the sweep's fit actor reserves one)."""

    def __post_init__(self):
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}, got {self.estimator!r}")
        if self.treatment_featurizer not in (*TREATMENT_FEATURIZERS, "auto"):
            raise ValueError(f"treatment_featurizer must be auto or one of {TREATMENT_FEATURIZERS}, "
                             f"got {self.treatment_featurizer!r}")
        if self.featurizer_eps != "auto" and not (isinstance(self.featurizer_eps, (int, float))
                                                  and self.featurizer_eps > 0):
            raise ValueError(f"featurizer_eps must be auto or a number > 0, got {self.featurizer_eps!r}")
        if self.cv < 2:
            raise ValueError(f"cv must be >= 2, got {self.cv}")
        if self.n_estimators is not None and self.n_estimators < 4:
            raise ValueError(f"n_estimators must be >= 4, got {self.n_estimators}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")
        if self.nuisance_model not in ("auto", "linear", "poly", "forest"):
            raise ValueError(f"nuisance_model must be auto, linear, poly or forest, got {self.nuisance_model!r}")
        if self.objective is not None:
            try:
                Objective.from_json(self.objective)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"objective: {exc}") from None


def make_estimator(config: FitConfig, domains: list[str], estimator: str | None = None,
                   covariate_names: tuple[str, ...] | None = None):
    """The unfitted estimator `estimator` (default: config.estimator, not auto) for `domains`;
    `covariate_names` (the runs table's `x.` columns) lets sieve-dml pair a domain's covariates
    with that domain's weight."""
    name = estimator or config.estimator
    ref = None
    if config.reference_domain is not None:
        if config.reference_domain not in domains:
            raise UserError(f"reference_domain {config.reference_domain!r} is not a domain of the runs "
                            f"table: {domains}")
        ref = domains.index(config.reference_domain)
    common = dict(reference_domain=ref, random_state=config.seed)
    nuisance = config.nuisance_model
    dml = dict(treatment_featurizer=config.treatment_featurizer, featurizer_eps=config.featurizer_eps)
    sizes = {} if config.n_estimators is None else {"n_estimators": config.n_estimators}
    if name == "causal-forest":
        trees = {k: 4 * (v // 4) for k, v in sizes.items()}
        return CausalForestEstimator(**common, **dml, model_y=nuisance, model_t=nuisance, cv=config.cv, **trees)
    if name == "linear-dml":
        return LinearDMLEstimator(**common, **dml, model_y=nuisance,
                                  model_t=nuisance, cv=config.cv)
    if name == "regression":
        return RegressionEstimator(**common, **dml)
    if name == "sieve-dml":
        matched = None if covariate_names is None else covariate_domains(covariate_names, domains)
        return SieveDMLEstimator(**common, **dml, covariate_domains=matched)
    return RegMixEstimator(**common, **sizes)


def fit_runs_table(table: RunsTable, config: FitConfig):
    """The fitted estimator; with estimator auto, the winner of causal/selection.py (its
    `selection_` holds every candidate's scores and the choice)."""
    with threadpool_limits(limits=config.threads):
        names = tuple(table.covariate_names)
        if config.estimator != "auto":
            unfitted = make_estimator(config, table.domains, covariate_names=names)
            estimator = clone(unfitted).fit(table.mixtures(), table.covariates(), table.y)
            if config.estimator in CROSS_FITTED_ERROR:
                attach_held_out_evidence(estimator, table, unfitted, name=config.estimator, seed=config.seed,
                                         jobs=config.jobs, threads=config.threads)
            return estimator
        return select_estimator(table, lambda name: make_estimator(config, table.domains, name, names),
                                seed=config.seed, jobs=config.jobs, threads=config.threads)


def estimator_label(estimator, config: FitConfig) -> str:
    """The registry name a model directory records (what `auto` resolved to)."""
    return estimator_name(estimator)


def fit_and_save(runs: str, out: str, config: FitConfig, *, overwrite: bool = False) -> dict:
    """Fit `config.estimator` on the runs table at `runs` and save the model directory `out`.
    With `config.objective`, `y` is recomputed from the table's metrics first, and the resolved
    objective (with any table statistics) is what the model directory records."""
    # Before the fit, so that a refused --out costs nothing (and again when writing).
    check_output_path(out, kind="model directory", markers=(MODEL_JSON, CHECKSUMS),
                      overwrite=overwrite, inputs=[runs])
    objective = Objective.from_json(config.objective) if config.objective is not None else None
    table, resolved = read_runs_table_with_objective(runs, objective)
    if resolved is not None:
        config = dataclasses.replace(config, objective=resolved.to_json())
        log.info("objective: %s", resolved.describe())
    log.info("fitting %s on %d runs x %d domains x %d covariates", config.estimator, table.n_runs,
             len(table.domains), len(table.covariate_names))
    start = time.perf_counter()
    estimator = fit_runs_table(table, config)
    fit_s = time.perf_counter() - start
    name = estimator_label(estimator, config)
    model = FittedMixtureModel.from_runs_table(estimator, name, table)
    saved = save_model_dir(model, out, runs_table_sha256=table.sha256, config=config,
                           overwrite=overwrite, inputs=[runs])
    selection = getattr(estimator, "selection_", None)
    if selection:
        for candidate, score in selection["scores"].items():
            pairs = f"out-of-fold error of near pairs' differences {score['pair_mse']:.4g}, " if "pair_mse" in score else ""
            log.debug("  %s: %soutcome MSE %.4g, Spearman %.3f%s", candidate, pairs, score["oof_mse"],
                     score["oof_spearman"], "  <- chosen" if candidate == name else "")
        if selection.get("rival"):
            log.debug("  gains blend in %s at a held-out share of %.2f", selection["rival"], selection["rival_share"])
        evidence = selection["mixture_evidence"]
        log.debug("  covariates alone (%s): out-of-fold MSE %.4g; the mixture helps with p = %.3g "
                 "(one-sided paired t-test; recommend does not move at p >= alpha)",
                 evidence["covariates_only"], evidence["covariates_only_oof_mse"], evidence["p_value"])
    return {"model_dir": str(saved), "model_version": model.version,
            "estimator": name, "selection": selection, "n_runs": table.n_runs,
            "domains": table.domains, "covariate_names": table.covariate_names,
            "objective": config.objective, "fit_s": round(fit_s, 3)}
