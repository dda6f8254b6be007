"""`validate`: train the target model on the recommended and baseline mixtures and compare."""
from __future__ import annotations

import json

from actors.validation import ValidateConfig, run_validation
from commands.constraints import add_constraint_arguments, constraint_overrides
from core.config import load_config
from core.tracking import add_tracking_argument

HELP = "train the target model on the recommended and baseline mixtures of a pool and compare them"


def add_arguments(parser) -> None:
    parser.add_argument("--config", default=None, help="YAML file with ValidateConfig fields "
                        "(training settings under `proxy:`)")
    parser.add_argument("--model", default=None, help="fitted CausalMix model directory")
    parser.add_argument("--pool", default=None, help="target pool (folder or manifest)")
    parser.add_argument("--features", default=None, help="features of the target pool")
    parser.add_argument("--target-model", dest="target_model", default=None,
                        help="language model to train (directory or hub id)")
    parser.add_argument("--regmix-model", dest="regmix_model", default=None,
                        help="model directory fitted with --estimator regmix (adds the RegMix baseline)")
    parser.add_argument("--no-dml-model", dest="no_dml_model", default=None,
                        help="model directory fitted with --estimator regression (the no-dml ablation)")
    parser.add_argument("--no-covariates-model", dest="no_covariates_model", default=None,
                        help="model directory fitted on the runs without x.* columns (no-covariates)")
    parser.add_argument("--runs", default=None, help="the sweep's runs table (for best-run)")
    parser.add_argument("--grid", type=int, default=None, metavar="N",
                        help="add the Grid baseline: N mixtures spread over the simplex")
    parser.add_argument("--mixtures", default=None,
                        help="comma-separated competing mixtures: causalmix-a, causalmix-s, no-dml, "
                        "no-covariates, regmix, equal, natural, best-run, grid (any case) and FILE.json "
                        "({domain: weight} or a recommend output); default: causalmix-a, causalmix-s, "
                        "regmix (with --regmix-model), equal, natural, and grid with --grid")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per mixture, shared across mixtures for paired comparisons (default 3)")
    parser.add_argument("--trust-radius", dest="trust_radius", default=None,
                        help="trust radius of the CausalMix policies: auto (default) or an L2 radius")
    parser.add_argument("--out", default=None, help="output folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out even when it exists and is not a validation folder")
    parser.add_argument("--resume", action="store_true", default=None,
                        help="continue the validation in --out: keep its landed runs (same settings "
                        "and mixtures, else refused) and train only the missing ones")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or local)")
    add_tracking_argument(parser)
    add_constraint_arguments(parser, domain_tokens=False)


def run(args) -> int:
    cfg = load_config(ValidateConfig, args.config, {**vars(args), **constraint_overrides(args)})
    summary = run_validation(cfg, overwrite=args.overwrite)
    print(json.dumps({"best": summary["best"],
                      "avgdev_mean": {k: v["avgdev_mean"] for k, v in summary["candidates"].items()},
                      "y_mean": {k: v["y_mean"] for k, v in summary["candidates"].items()},
                      "verdict": summary["verdict"], "runs": summary["runs"], "out": cfg.out}))
    return 0
