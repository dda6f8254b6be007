"""`sweep`: the Dirichlet sweep of proxy SFT runs on Ray Tune (see docs/sweep.md).

    launch.py sweep --pool POOL --features FEATURES --model MODEL --runs N --out RUN_DIR
    launch.py sweep --out RUN_DIR --resume          # settings come from RUN_DIR/sweep_config.yaml

Flags override the YAML of `--config` (SweepConfig fields; `proxy:` and `state:` nest).
The last stdout line is a JSON summary (also in RUN_DIR/sweep.json).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from actors.sweep import CONFIG_FILE, SweepConfig, run_sweep
from core.config import load_config
from core.errors import UserError
from core.tracking import add_tracking_argument

HELP = "run the Dirichlet sweep of proxy SFT runs on Ray Tune (resumable)"

_PROXY_FLAGS = {"model": "model", "budget": "budget", "budget_unit": "budget_unit",
                "learning_rate": "learning_rate", "device": "device"}


def add_arguments(parser) -> None:
    parser.add_argument("--config", default=None, help="YAML file with SweepConfig fields")
    parser.add_argument("--pool", default=None, help="pool directory or manifest")
    parser.add_argument("--features", default=None,
                        help="features of the pool (`launch.py featurize` output dir, or a .parquet)")
    parser.add_argument("--model", default=None, help="proxy base model: local directory or hub id")
    parser.add_argument("--runs", type=int, default=None, help="proxy runs to attempt (default 24)")
    parser.add_argument("--out", default=None, help="RUN_DIR for runs.parquet and the Tune experiment")
    parser.add_argument("--resume", action="store_true", default=None,
                        help="continue the interrupted sweep in --out (only missing runs)")
    parser.add_argument("--adaptive", type=float, default=None, metavar="FRACTION",
                        help="share of runs drawn around the fit actor's latest recommendation")
    parser.add_argument("--adaptive-round", dest="adaptive_round", type=int, default=None, metavar="N",
                        help="runs per adaptive round (default 8): round r's adaptive runs use the fit "
                        "on rounds < r, so the runs table does not depend on the finish order")
    parser.add_argument("--seed", type=int, default=None, help="sweep seed (default 0)")
    parser.add_argument("--budget", type=int, default=None, help="per-run budget (default 400)")
    parser.add_argument("--budget-unit", choices=("samples", "tokens"), default=None,
                        help="unit of --budget (default samples)")
    parser.add_argument("--learning-rate", type=float, default=None, help="peak AdamW learning rate")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda")
    parser.add_argument("--cover", action="append", default=None, metavar="FEATURES",
                        help="features of a pool the fit will be asked about (repeatable); "
                        "sweep.json reports whether the runs' covariates span it")
    parser.add_argument("--cpus-per-trial", type=float, default=None, help="CPUs per trial (default 1)")
    parser.add_argument("--gpus-per-trial", type=float, default=None,
                        help="GPUs per trial (default: 1 / --trials-per-gpu when the cluster has GPUs)")
    parser.add_argument("--gpus-per-run", dest="gpus_per_run", type=int, default=None, metavar="N",
                        help="Ray Train workers per proxy run (GPUs on a GPU cluster); N > 1 trains "
                        "each run through Ray Train with FSDP (default 1: in the trial)")
    parser.add_argument("--trials-per-gpu", dest="trials_per_gpu", type=int, default=None,
                        help="proxy trials sharing one GPU (fractional GPU requests; default 1)")
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="cap on trials at once (default 0: as many as resources allow)")
    parser.add_argument("--max-failures", type=int, default=None, help="retries per failed trial (default 2)")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or local)")
    add_tracking_argument(parser)
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                        help="no progress bar")


def build_config(args) -> SweepConfig:
    values = dict(vars(args))
    config_path = values.pop("config", None)
    if values.get("resume") and config_path is None and values.get("out"):
        saved = Path(values["out"]) / CONFIG_FILE
        if saved.is_file():
            config_path = saved
    cfg = load_config(SweepConfig, config_path, values)
    proxy_overrides = {field: values[flag] for flag, field in _PROXY_FLAGS.items()
                       if values.get(flag) is not None}
    if proxy_overrides:
        try:
            cfg = dataclasses.replace(cfg, proxy=dataclasses.replace(cfg.proxy, **proxy_overrides))
        except ValueError as exc:
            raise UserError(f"sweep: {exc}") from None
    return cfg


def run(args) -> int:
    summary = run_sweep(build_config(args))
    keys = ("status", "runs_done", "runs_total", "best_y", "best_run", "wall_s", "runs_file")
    print(json.dumps({k: summary[k] for k in keys}))
    return 0 if summary["status"] == "ok" else 1
