"""Trackers as Tune callbacks: one tracked run per proxy run (its learning curve, dev metrics and
y), tagged with its mixture, data state, seed and sampler, under a parent run of the command.
Thin shells over Ray's `MLflowLoggerCallback` / `WandbLoggerCallback` (ray.air.integrations)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping

from ray.air.integrations.mlflow import MLflowLoggerCallback

from causalmix.causal.runs_table import MIX
from causalmix.core.tracking import Tracking, row_tags, start_parent

# Deferred on purpose, so that importing this module does not load wandb: the function-local imports
# (of these libraries or of this project's modules that import them).


def run_tags(config: Mapping) -> dict[str, str]:
    """Tags of one proxy run from its trial config (actors.sweep.searcher's suggestion)."""
    row = {"run_id": config.get("run_id", ""), "seed": config.get("seed", ""), "sampler": config.get("sampler", "")}
    row.update({f"{MIX}{d}": w for d, w in (config.get("mixture") or {}).items()})
    row.update({f"state.{d}": ",".join(map(str, names)) for d, names in (config.get("state") or {}).items()})
    return row_tags(row)


def finite_numbers(result: Mapping) -> dict:
    """A result without its NaNs: a curve report's placeholder y (actors/sweep/trainer.py) and a grad
    norm with clipping off are no points of a curve."""
    return {k: v for k, v in result.items() if not (isinstance(v, float) and math.isnan(v))}


class TrackedMLflowCallback(MLflowLoggerCallback):
    """MLflowLoggerCallback whose runs carry per-run tags (Ray's takes one tag set for all).
    It leans on two behaviours of Ray 2.60's class, both checked by
    tests/test_tracking.py::test_three_run_sweep_tracked_in_mlflow: `log_trial_start` reads the
    public `tags` attribute when it creates the run, and a result's `timesteps_total` is the
    metric's step."""

    def log_trial_start(self, trial) -> None:
        shared = self.tags or {}
        self.tags = {**shared, **run_tags(trial.config)}
        try:
            super().log_trial_start(trial)
        finally:
            self.tags = shared

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        super().log_trial_result(iteration, trial, finite_numbers(result))


def wandb_callback(tracking: Tracking):
    """Ray's WandbLoggerCallback, offline under the output folder unless W&B has a key."""
    from ray.air.integrations.wandb import WandbLoggerCallback

    Path(tracking.directory).mkdir(parents=True, exist_ok=True)  # W&B adds its wandb/ folder
    if tracking.offline:
        # Ray's callback asks for an API key unless W&B's own variable says offline.
        os.environ.setdefault("WANDB_MODE", "offline")
    return WandbLoggerCallback(project=tracking.target, group=tracking.experiment, excludes=["run_row"],
                               mode="offline" if tracking.offline else "online", dir=tracking.directory)


def start_tracking(tracking: Tracking | None, role: str, params: Mapping | None = None,
                   parent_run_id: str | None = None):
    """(parent run, Tune callbacks) of a tracked command; (None, []) without tracking.
    `parent_run_id` reopens the parent of the sweep being resumed (MLflow)."""
    if tracking is None:
        return None, []
    parent = start_parent(tracking, role, params, parent_run_id)  # MLflow's also opts in to the file store
    if tracking.kind == "mlflow":
        return parent, [TrackedMLflowCallback(tracking.target, registry_uri=tracking.target,
                                              experiment_name=tracking.experiment,
                                              tags=parent.child_tags())]
    return parent, [wandb_callback(tracking)]
