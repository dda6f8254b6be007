"""Trackers as Tune callbacks: one tracked run per proxy run (its learning curve, dev metrics and
y), tagged with its mixture, data state, seed and sampler, under a parent run of the command.
Thin shells over Ray's `MLflowLoggerCallback` / `WandbLoggerCallback` (ray.air.integrations)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping

from ray.air.integrations.mlflow import MLflowLoggerCallback

from core.tracking import WANDB_DIR, MlflowParent, Tracking


def run_tags(config: Mapping) -> dict[str, str]:
    """Tags of one proxy run from its trial config (actors.sweep_searcher's suggestion)."""
    tags = {"causalmix.run_id": str(config.get("run_id", "")), "causalmix.seed": str(config.get("seed", "")),
            "causalmix.sampler": str(config.get("sampler", ""))}
    tags.update({f"mix.{d}": f"{float(w):.6g}" for d, w in (config.get("mixture") or {}).items()})
    tags.update({f"state.{d}": ",".join(map(str, names)) for d, names in (config.get("state") or {}).items()})
    return tags


def finite_numbers(result: Mapping) -> dict:
    """A result without its NaNs: a curve report's placeholder y (actors/trainer.py) and a grad
    norm with clipping off are no points of a curve."""
    return {k: v for k, v in result.items() if not (isinstance(v, float) and math.isnan(v))}


class TrackedMLflowCallback(MLflowLoggerCallback):
    """MLflowLoggerCallback whose runs carry per-run tags (Ray's takes one tag set for all)."""

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

    directory = Path(tracking.directory) / WANDB_DIR
    directory.mkdir(parents=True, exist_ok=True)
    if tracking.offline:
        # Ray's callback asks for an API key unless W&B's own variable says offline.
        os.environ.setdefault("WANDB_MODE", "offline")
    return WandbLoggerCallback(project=tracking.target, group=tracking.experiment, excludes=["run_row"],
                               mode="offline" if tracking.offline else "online", dir=str(directory))


class WandbParent:
    """The W&B counterpart of core.tracking.MlflowParent: a run of the same group."""

    def __init__(self, tracking: Tracking, role: str, params: Mapping | None = None):
        import wandb

        directory = Path(tracking.directory) / WANDB_DIR
        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=tracking.target, group=tracking.experiment, job_type=role,
                              name=f"{Path(tracking.directory).name}-{role}", config=dict(params or {}),
                              mode="offline" if tracking.offline else "online", dir=str(directory),
                              reinit="create_new")

    def child_tags(self) -> dict[str, str]:
        return {}

    def log_snapshots(self, snapshots) -> int:
        from core.tracking import snapshot_metrics

        n = 0
        for snapshot in snapshots:
            self.run.log({f"fit.{k}": v for k, v in snapshot_metrics(snapshot).items()},
                         step=int(snapshot.get("round", snapshot.get("version", n))))
            n += 1
        return n

    def finish(self, summary: Mapping, status: str = "FINISHED") -> None:
        from core.tracking import numeric_leaves

        self.run.summary.update({f"summary.{k}": v for k, v in numeric_leaves(dict(summary)).items()})
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


def start_tracking(tracking: Tracking | None, role: str, params: Mapping | None = None):
    """(parent run, Tune callbacks) of a tracked command; (None, []) without tracking."""
    if tracking is None:
        return None, []
    if tracking.kind == "mlflow":
        parent = MlflowParent(tracking, role, params)  # also opts in to the file store
        return parent, [TrackedMLflowCallback(tracking.target, registry_uri=tracking.target,
                                              experiment_name=tracking.experiment,
                                              tags=parent.child_tags())]
    parent = WandbParent(tracking, role, params)
    return parent, [wandb_callback(tracking)]
