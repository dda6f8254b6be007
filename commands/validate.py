"""`validate`: train the target model on the recommended and baseline mixtures and compare."""
from __future__ import annotations

import json
import sys
from typing import Mapping

from causalmix.actors.validate.driver import ValidateConfig, run_validation
from causalmix.commands.constraints import add_constraint_arguments, constraint_overrides
from causalmix.core.cli_config import ConfigFlags
from causalmix.core.config import build_config, config_section, read_yaml_mapping
from causalmix.core.errors import UserError
from causalmix.core.tracking import add_tracking_argument
from causalmix.proxy.config import TargetRunConfig
from causalmix.target.distributed import TargetTrainConfig, check_memory_plan


FLAGS = ConfigFlags(
    ValidateConfig, ("model", "pool", "features", "target_model", "regmix_model", "no_dml_model",
                     "no_covariates_model", "runs", "grid", "mixtures", "seeds", "trust_radius", "out", "resume",
                     "address"),
    nested={"train": (("workers", "gpus_per_run"), "gpu_type", "activation_checkpointing")},
    options={"grid": {"metavar": "N"}, "gpus_per_run": {"metavar": "N"},
             # one comma-separated string, which ValidateConfig parses (as it does from YAML)
             "mixtures": {"action": "store"}},
    section="validate")
TRAIN_FLAGS = ("gpus_per_run", "gpu_type", "activation_checkpointing")


def add_arguments(parser) -> None:
    FLAGS.add_config_argument(parser)
    FLAGS.add_to(parser, only=[f.dest for f in FLAGS.flags if f.dest not in TRAIN_FLAGS])
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out even when it exists and is not a validation folder")
    group = parser.add_argument_group("target training (docs/target-training.md)")
    FLAGS.add_to(group, only=TRAIN_FLAGS)
    group.add_argument("--dry-run", dest="dry_run", action="store_true",
                       help="print the memory plan of one training run and stop (exit 2 if it does not "
                       "fit); needs only --target-model (or the config's)")
    add_tracking_argument(parser)
    add_constraint_arguments(parser, domain_tokens=False)


def _section(values: dict, key: str, where: str) -> dict:
    section = values.get(key) or {}
    if not isinstance(section, Mapping):
        raise UserError(f"{where}: {key} must be a mapping, not {type(section).__name__}")
    return dict(section)


def dry_run(args) -> int:
    """The memory plan of one run: needs only the target model and the training settings, not
    the inputs a whole validation checks."""
    where = f"config {args.config}" if args.config else "validate"
    values = (config_section(read_yaml_mapping(args.config), FLAGS.section, ValidateConfig.__dataclass_fields__)
              if args.config else {})
    flags = FLAGS.overrides(args)
    target = args.target_model or values.get("target_model")
    if not target:
        raise UserError("validate --dry-run needs --target-model (or target_model in --config)")
    proxy = build_config(TargetRunConfig, {**_section(values, "proxy", where), "model": target}, f"{where}.proxy")
    tcfg = build_config(TargetTrainConfig, {**_section(values, "train", where), **flags.get("train", {})},
                        f"{where}.train")
    plan = check_memory_plan(proxy, tcfg, {"GPU": 1} if tcfg.gpu_type else {}, out=sys.stdout)
    print(json.dumps(plan.to_json()))
    return 0


def run(args) -> int:
    if args.dry_run:
        return dry_run(args)
    cfg = FLAGS.load({**vars(args), **constraint_overrides(args)})
    summary = run_validation(cfg, overwrite=args.overwrite)
    print(json.dumps({"best": summary["best"],
                      "avgdev_mean": {k: v["avgdev_mean"] for k, v in summary["candidates"].items()},
                      "y_mean": {k: v["y_mean"] for k, v in summary["candidates"].items()},
                      "verdict": summary["verdict"], "runs": summary["runs"], "out": cfg.out}))
    return 0
