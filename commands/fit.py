"""`fit`: fit a causal model (chosen by out-of-fold error by default) on a runs table into a model directory."""
from __future__ import annotations

import dataclasses
import json

from causalmix.causal.featurizers import TREATMENT_FEATURIZERS
from causalmix.causal.fitting import FitConfig, fit_and_save
from causalmix.causal.registry import ESTIMATORS
from causalmix.causal.objective import NORMALISATIONS, Objective
from causalmix.commands.summaries import fit_summary
from causalmix.core.cli_config import ConfigFlags
from causalmix.core.errors import UserError
from causalmix.core.logs import get_logger

log = get_logger(__name__)


FLAGS = ConfigFlags(FitConfig, ("estimator", "seed", "treatment_featurizer", "reference_domain", "jobs"),
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
                             "format: docs/causal.md) before fitting; no run is repeated")
    parser.add_argument("--target", default=None, metavar="metric.NAME",
                        help="fit one metric: y = that column (negated when loss-type)")
    parser.add_argument("--normalise", choices=NORMALISATIONS, default=None,
                        help="normalisation of the objective (default: the file's, else none); "
                             "alone: the default objective (every metric) with it")


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
    record = fit_and_save(args.runs, args.out, config, overwrite=args.overwrite)
    log.info("%s", fit_summary(record))
    print(json.dumps(record))
    return 0
