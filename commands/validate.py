"""`validate`: train the target model on the recommended and baseline mixtures and compare."""
from __future__ import annotations

import json
import sys

from actors.validation import DEFAULT_TARGET_PROXY, ValidateConfig, run_validation
from commands.constraints import add_constraint_arguments, constraint_overrides
from core.config import config_section, load_config, read_yaml_mapping
from core.errors import UserError
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
    group = parser.add_argument_group("target training (docs/target-training.md)")
    group.add_argument("--gpus-per-run", dest="gpus_per_run", type=int, default=None, metavar="N",
                       help="workers per training run (GPUs on a GPU cluster); N > 1 trains through "
                       "Ray Train with FSDP (config: train.workers)")
    group.add_argument("--gpu-type", dest="gpu_type", default=None,
                       help="GPU model for the memory plan, e.g. H100-80, A100-40, L4-24 "
                       "(default: the cluster's accelerator type)")
    group.add_argument("--activation-checkpointing", dest="activation_checkpointing",
                       action="store_true", default=None, help="recompute activations in backward")
    group.add_argument("--dry-run", dest="dry_run", action="store_true",
                       help="print the memory plan of one training run and stop (exit 2 if it does not "
                       "fit); needs only --target-model (or the config's)")
    add_tracking_argument(parser)
    add_constraint_arguments(parser, domain_tokens=False)


TRAIN_FLAGS = {"gpus_per_run": "workers", "gpu_type": "gpu_type",
               "activation_checkpointing": "activation_checkpointing"}


def _train_settings(args, values: dict) -> dict:
    """The config's `train:` mapping with the command-line flags over it."""
    train = values.get("train") or {}
    if not isinstance(train, dict):
        raise UserError(f"config {args.config}: train must be a mapping, not {type(train).__name__}")
    return {**train, **{key: getattr(args, flag) for flag, key in TRAIN_FLAGS.items()
                        if getattr(args, flag) is not None}}


def dry_run(args, values: dict, train: dict) -> int:
    from actors.ray_train import check_memory_plan
    from proxy.config import ProxyConfig
    from proxy.distributed import TargetTrainConfig

    where = f"config {args.config}" if args.config else "validate"
    target = args.target_model or values.get("target_model")
    if not target:
        raise UserError("validate --dry-run needs --target-model (or target_model in --config)")
    try:
        proxy = ProxyConfig(**{**DEFAULT_TARGET_PROXY, **(values.get("proxy") or {}), "model": target})
        tcfg = TargetTrainConfig(**train)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: {exc}") from None
    plan = check_memory_plan(proxy, tcfg, {"GPU": 1} if tcfg.gpu_type else {}, out=sys.stdout)
    print(json.dumps(plan.to_json()))
    return 0


def run(args) -> int:
    values = (config_section(read_yaml_mapping(args.config), "validate", ValidateConfig.__dataclass_fields__)
              if args.config else {})
    train = _train_settings(args, values)
    if args.dry_run:
        return dry_run(args, values, train)
    cfg = load_config(ValidateConfig, args.config,
                      {**vars(args), **constraint_overrides(args), "train": train}, section="validate")
    summary = run_validation(cfg, overwrite=args.overwrite)
    print(json.dumps({"best": summary["best"],
                      "avgdev_mean": {k: v["avgdev_mean"] for k, v in summary["candidates"].items()},
                      "y_mean": {k: v["y_mean"] for k, v in summary["candidates"].items()},
                      "verdict": summary["verdict"], "runs": summary["runs"], "out": cfg.out}))
    return 0
