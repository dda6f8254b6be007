"""`sweep`: the Dirichlet sweep of proxy SFT runs on Ray Tune (see docs/sweep.md).

    launch.py sweep --pool POOL --features FEATURES --model MODEL --runs N --out RUN_DIR
    launch.py sweep --out RUN_DIR --resume          # settings come from RUN_DIR/sweep_config.yaml

Flags override the YAML of `--config` (SweepConfig fields; `proxy:` and `state:` nest).
The last stdout line is a JSON summary (also in RUN_DIR/sweep.json).
"""
from __future__ import annotations

import json

from causalmix.actors.sweep.driver import run_sweep
from causalmix.core.cli_config import ConfigFlags
from causalmix.core.tracking import add_tracking_argument
from causalmix.design.sweep_config import CONFIG_FILE, SweepConfig


FLAGS = ConfigFlags(
    SweepConfig, ("pool", "features", "out", "runs", "resume", "adaptive", "adaptive_round", "seed", "cover",
                  "cpus_per_trial", "gpus_per_trial", "gpus_per_run", "trials_per_gpu", "max_concurrent", "max_failures",
                  "address", "progress"),
    nested={"proxy": ("model", "budget", "budget_unit", "learning_rate", "device")},
    options={"adaptive": {"metavar": "FRACTION"}, "adaptive_round": {"metavar": "N"},
             "cover": {"metavar": "FEATURES"}})


def add_arguments(parser) -> None:
    FLAGS.add_config_argument(parser)
    FLAGS.add_to(parser)
    add_tracking_argument(parser)


def config_from_args(args) -> SweepConfig:
    """The SweepConfig of parsed flags and --config (on --resume, the settings saved in --out)."""
    return FLAGS.load_resumable(args, CONFIG_FILE)


def run(args) -> int:
    summary = run_sweep(config_from_args(args))
    keys = ("status", "runs_done", "runs_total", "best_y", "best_run", "wall_s", "runs_file")
    print(json.dumps({k: summary[k] for k in keys}))
    return 0 if summary["status"] == "ok" else 1
