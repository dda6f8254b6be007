"""`fit`: fit a causal model (chosen by out-of-fold error by default) on a runs table into a model directory."""
from __future__ import annotations

import json
import sys
import time

from causal.featurizers import TREATMENT_FEATURIZERS
from causal.fitting import ESTIMATORS, FitConfig, estimator_label, fit_runs_table
from causal.model_dir import CHECKSUMS, MODEL_JSON, FittedMixtureModel, save_model_dir
from causal.runs_table import read_runs_table
from core.atomic import check_output_path
from core.config import load_config
from core.warn import warnings_to_stderr

HELP = "fit a causal model (estimator chosen by cross-validation by default) on a runs table"


def add_arguments(parser) -> None:
    parser.add_argument("--runs", required=True, help="runs table (Parquet or CSV)")
    parser.add_argument("--out", required=True, help="model directory to write (replaced atomically)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out even when it exists and is not a model directory")
    parser.add_argument("--estimator", choices=sorted(ESTIMATORS), default=None,
                        help="estimator (default auto: chosen by out-of-fold outcome error)")
    parser.add_argument("--seed", type=int, default=None, help="random state (default 0)")
    parser.add_argument("--config", default=None, help="YAML with FitConfig fields (see causal/fitting.py)")
    parser.add_argument("--treatment-featurizer", dest="treatment_featurizer", default=None,
                        choices=["auto", *TREATMENT_FEATURIZERS],
                        help="phi(T) of the final stage (default auto: chosen by CV)")
    parser.add_argument("--reference-domain", dest="reference_domain", default=None,
                        help="domain the treatment coordinates are measured against")


def run(args) -> int:
    with warnings_to_stderr():
        return _run(args)


def fit_and_save(runs: str, out: str, config: FitConfig, *, overwrite: bool = False) -> dict:
    """Fit `config.estimator` on the runs table at `runs` and save the model directory `out`."""
    # Before the fit, so that a refused --out costs nothing (and again when writing).
    check_output_path(out, kind="model directory", markers=(MODEL_JSON, CHECKSUMS),
                      overwrite=overwrite, inputs=[runs])
    table = read_runs_table(runs)
    print(f"fitting {config.estimator} on {table.n_runs} runs x {len(table.domains)} domains x "
          f"{len(table.covariate_names)} covariates", file=sys.stderr)
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
            print(f"  {candidate}: out-of-fold MSE {score['oof_mse']:.4g}, Spearman {score['oof_spearman']:.3f}"
                  + ("  <- chosen" if candidate == name else ""), file=sys.stderr)
    return {"model_dir": str(saved), "model_version": model.version,
            "estimator": name, "selection": selection, "n_runs": table.n_runs,
            "domains": table.domains, "covariate_names": table.covariate_names,
            "fit_s": round(fit_s, 3)}


def _run(args) -> int:
    config = load_config(FitConfig, args.config, vars(args))
    print(json.dumps(fit_and_save(args.runs, args.out, config, overwrite=args.overwrite)))
    return 0
