"""`fit`: fit a causal model (chosen by out-of-fold error by default) on a runs table into a model directory."""
from __future__ import annotations

import dataclasses
import json
import time

from causal.featurizers import TREATMENT_FEATURIZERS
from causal.fitting import ESTIMATORS, FitConfig, estimator_label, fit_runs_table
from causal.model_dir import CHECKSUMS, MODEL_JSON, FittedMixtureModel, save_model_dir
from causal.objective import NORMALISATIONS, Objective
from causal.runs_table import read_runs_table_with_objective
from core.atomic import check_output_path
from core.cli_config import ConfigFlags
from core.errors import UserError
from core.logs import get_logger

log = get_logger(__name__)

HELP = "fit a causal model (estimator chosen by cross-validation by default) on a runs table"


FLAGS = ConfigFlags(FitConfig, ("estimator", "seed", "treatment_featurizer", "reference_domain"),
                    options={"estimator": {"choices": sorted(ESTIMATORS)},
                             "treatment_featurizer": {"choices": ["auto", *TREATMENT_FEATURIZERS]}})


def add_arguments(parser) -> None:
    parser.add_argument("--runs", required=True, help="runs table (Parquet or CSV)")
    parser.add_argument("--out", required=True, help="model directory to write (replaced atomically)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out even when it exists and is not a model directory")
    FLAGS.add_config_argument(parser)
    FLAGS.add_to(parser)
    parser.add_argument("--objective", default=None, metavar="FILE",
                        help="recompute y from the metric.* columns with this objective (YAML/JSON, "
                             "see causal/objective.py) before fitting; no run is repeated")
    parser.add_argument("--target", default=None, metavar="metric.NAME",
                        help="fit one metric: y = that column (negated when loss-type)")
    parser.add_argument("--normalise", choices=NORMALISATIONS, default=None,
                        help="normalisation of the objective (default: the file's, else none); "
                             "alone: the default objective (every metric) with it")


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
            log.info("  %s: out-of-fold MSE %.4g, Spearman %.3f%s", candidate, score["oof_mse"],
                     score["oof_spearman"], "  <- chosen" if candidate == name else "")
        evidence = selection["mixture_evidence"]
        log.info("  covariates alone (%s): out-of-fold MSE %.4g; the mixture helps with p = %.3g "
                 "(one-sided paired t-test; recommend does not move at p >= alpha)",
                 evidence["covariates_only"], evidence["covariates_only_oof_mse"], evidence["p_value"])
    return {"model_dir": str(saved), "model_version": model.version,
            "estimator": name, "selection": selection, "n_runs": table.n_runs,
            "domains": table.domains, "covariate_names": table.covariate_names,
            "objective": config.objective, "fit_s": round(fit_s, 3)}


def objective_from_args(args) -> dict | None:
    """--objective FILE, --target metric.NAME and --normalise as one objective (or None)."""
    if args.objective and args.target:
        raise UserError("give --objective FILE or --target metric.NAME, not both")
    objective = None
    if args.objective:
        objective = Objective.load(args.objective)
    elif args.target:
        objective = Objective.target(args.target)
    if args.normalise:
        objective = dataclasses.replace(objective or Objective(), normalise=args.normalise, stats=None)
    return None if objective is None else objective.to_json()


def run(args) -> int:
    overrides = vars(args)
    objective = objective_from_args(args)
    if objective is not None:
        overrides = {**overrides, "objective": objective}
    else:
        overrides = {k: v for k, v in overrides.items() if k != "objective"}
    config = FLAGS.load(overrides)
    print(json.dumps(fit_and_save(args.runs, args.out, config, overwrite=args.overwrite)))
    return 0
