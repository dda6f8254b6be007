"""The sweep's plan, computed before the first trial starts (docs/sweep.md: the driver in parts):
what every trial asks for, how many trials Tune may keep pending, the proxy settings the trials
get on this cluster, and what an interrupted sweep already has. Plain data made from the config,
the cluster's resources (`ray.cluster_resources()`, passed in) and RUN_DIR: no Ray is started
or called here, so every decision is tested in milliseconds (tests/test_sweep_plan.py)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import yaml

from causalmix.causal.runs_table import RunsTableWriter
from causalmix.core.errors import UserError
from causalmix.design.sweep_config import CONFIG_FILE, RUNS_FILE, TRACKING_FILE, TUNE_DIR, SweepConfig
from causalmix.design.sweep_design import config_yaml
from causalmix.proxy.config import ProxyConfig
from causalmix.proxy.memory import ModelShape, gpus_per_trial, max_trials_per_gpu, trial_memory_bytes
from causalmix.proxy.memory_plan import read_model_config
from causalmix.target.distributed import TargetTrainConfig

MIN_PENDING = 16
DRIVER_MEMORY = 512 * 1024**2
"""Memory the Tune trial of a Ray Train run reserves for its own process (no CPU, no GPU).
Tune needs a non-empty request; memory is what the driver does use."""


def _row_json(row: dict) -> str:
    return json.dumps(row, default=lambda v: v.item() if hasattr(v, "item") else str(v))


def check_sweep_out(cfg: SweepConfig, out: Path) -> None:
    """Refuse an `out` that cannot take this sweep: a new sweep where one already is; a resume
    where none is, with other settings than the saved ones, or without a restorable Tune
    experiment. The UserError names the file and the fields."""
    from ray.tune import Tuner  # deferred: this package imports no Ray (tests/test_layering.py)

    saved_path, tune_dir = out / CONFIG_FILE, out / TUNE_DIR
    if not cfg.resume:
        if saved_path.exists() or tune_dir.exists():
            raise UserError(f"{out} already holds a sweep; pass --resume to continue it or choose "
                            "another --out")
        return
    if not saved_path.is_file():
        raise UserError(f"--resume: {out} holds no sweep ({CONFIG_FILE} missing); run without --resume")
    saved = yaml.safe_load(saved_path.read_text())
    now = yaml.safe_load(config_yaml(cfg))
    for values in (saved, now):  # how often a run logs its curve does not change the sweep
        (values.get("proxy") or {}).pop("log_every", None)
    changed = [k for k in type(cfg).IDENTITY if saved.get(k) != now.get(k)]
    if changed:
        raise UserError(f"--resume: {', '.join(changed)} differ from the sweep saved in {saved_path}; "
                        "resume with the same settings or start a new --out")
    if (saved.get("tracking") or "") != (now.get("tracking") or ""):
        # The runs tracked so far hang under the parent run of the tracker the sweep began with.
        raise UserError(f"--resume: --tracking {now.get('tracking') or '(none)'} differs from the sweep's "
                        f"{saved.get('tracking') or '(none)'}; a sweep's tracking is fixed when it starts")
    if not Tuner.can_restore(str(tune_dir)):
        raise UserError(f"--resume: no restorable Tune experiment in {tune_dir}")


@dataclass(frozen=True)
class ResumeState:
    """What RUN_DIR holds of an interrupted sweep (empty for a new one)."""

    finished: dict[str, str] = field(default_factory=dict)
    """{run_id: row JSON} of the runs whose rows landed in runs.parquet."""
    parent_run_id: str | None = None
    """The tracker's parent run recorded in tracking.json, reopened by the resume (MLflow)."""

    @classmethod
    def read(cls, out: Path) -> ResumeState:
        runs, record = out / RUNS_FILE, out / TRACKING_FILE
        finished = ({rid: _row_json(row) for rid, row in RunsTableWriter(runs).rows.items()}
                    if runs.is_file() else {})
        parent = json.loads(record.read_text())["parent_run_id"] if record.is_file() else None
        return cls(finished=finished, parent_run_id=parent)

    def rows(self) -> list[dict]:
        """The landed rows as plain JSON values (what the fit actor is fed on a resume)."""
        return [json.loads(row) for row in self.finished.values()]


def train_kwargs(gpus_per_run: int, cpus_per_trial: float) -> dict:
    """The trainable's `train` keyword (actors.sweep.trainer.proxy_trial) for Ray Train trials; {}
    for one-process trials, whose trainables need not take it."""
    if gpus_per_run <= 1:
        return {}
    return {"train": TargetTrainConfig(workers=gpus_per_run, cpus_per_worker=cpus_per_trial)}


@dataclass(frozen=True)
class TrialPlacement:
    """What a sweep trial asks Tune for and what one run needs from the cluster."""

    request: dict
    """Tune's resource request of the trial."""
    run_needs: dict
    """Resources one run holds at once (checked against the cluster before the sweep)."""
    slots: float
    """Runs the cluster fits at once."""
    max_concurrent: int | None
    """Cap on trials at once (None: Tune's resource accounting is the cap)."""


def trial_placement(gpus_per_run: int, cpus_per_trial: float, gpus: float,
                    cluster: dict) -> TrialPlacement:
    """One-process trials reserve their CPU and `gpus`; a Ray Train trial reserves
    DRIVER_MEMORY only, its `gpus_per_run` workers 1 GPU each (on a GPU cluster) and
    `cpus_per_trial` CPUs each, and at most as many run at once as the cluster fits."""
    if gpus_per_run <= 1:
        needs = {"CPU": cpus_per_trial, **({"GPU": gpus} if gpus else {})}
        slots = cluster.get("GPU", 0) / gpus if gpus else cluster.get("CPU", 1) / cpus_per_trial
        return TrialPlacement({"CPU": cpus_per_trial, "GPU": gpus}, needs, slots, None)
    needs = {"CPU": cpus_per_trial * gpus_per_run, **({"GPU": float(gpus_per_run)} if gpus else {})}
    slots = min(cluster.get(k, 0) / v for k, v in needs.items())
    return TrialPlacement({"CPU": 0, "GPU": 0, "memory": DRIVER_MEMORY}, needs, slots,
                          max(1, math.floor(slots)))


def trial_gpus(cfg: SweepConfig, cluster_gpus: float) -> float:
    """GPUs one trial asks for: gpus_per_trial if given, else 1 / trials_per_gpu on a
    cluster with GPUs, else 0."""
    if cfg.gpus_per_trial is not None:
        return float(cfg.gpus_per_trial)
    return gpus_per_trial(cfg.trials_per_gpu) if cluster_gpus > 0 else 0.0


def trial_resources(cfg: SweepConfig, gpus: float) -> dict:
    """The resource request of every Tune trial (`trial_placement`)."""
    return trial_placement(cfg.gpus_per_run, cfg.cpus_per_trial, gpus, {}).request


def gpu_memory_bytes() -> int | None:
    """Memory of one GPU of the cluster, where the driver can know it."""
    if os.environ.get("CAUSALMIX_GPU_MEMORY_GB"):
        return int(float(os.environ["CAUSALMIX_GPU_MEMORY_GB"]) * 1024**3)
    try:
        import torch  # deferred: torch takes seconds to import; only this probe needs it
    except ImportError:
        return None
    return torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else None


def check_trials_fit(cfg: SweepConfig) -> None:
    """Refuse `trials_per_gpu` trials per GPU when the memory estimate says they do not fit."""
    memory = gpu_memory_bytes()
    if memory is None:
        print(f"[sweep] trials_per_gpu {cfg.trials_per_gpu}: GPU memory unknown here (set "
              "CAUSALMIX_GPU_MEMORY_GB to check that they fit)", flush=True)
        return
    shape = ModelShape.from_config(read_model_config(cfg.proxy.model))
    per_trial = trial_memory_bytes(shape, seq_len=cfg.proxy.max_length,
                                   micro_batch=cfg.proxy.rows_per_micro_batch)
    fits = max_trials_per_gpu(memory, per_trial)
    if cfg.trials_per_gpu > fits:
        raise UserError(f"trials_per_gpu {cfg.trials_per_gpu}: one trial of {cfg.proxy.model} needs about "
                        f"{per_trial / 1024**3:.1f} GiB (proxy/memory_plan.py), so at most {fits} fit "
                        f"a {memory / 1024**3:.0f} GiB GPU")


@dataclass(frozen=True)
class SweepPlan:
    """Every decision the driver takes before the first trial, from plain inputs."""

    gpus_per_trial: float
    """GPUs each trial asks for (`trial_gpus`)."""
    trial_resources: dict[str, float]
    """Tune's resource request of every trial."""
    run_needs: dict[str, float]
    """What one run holds at once: the trial's request, or a Ray Train run's workers together."""
    max_concurrent: int | None
    """Cap on trials at once: `max_concurrent`, else the Ray Train runs the cluster fits, else
    None (Tune's resource accounting is the cap)."""
    train: TargetTrainConfig | None
    """The Ray Train workers of each run (`gpus_per_run` > 1), None for one-process trials."""
    max_pending: int
    """Trials Tune may keep waiting for resources (TUNE_MAX_PENDING_TRIALS_PG)."""
    proxy: ProxyConfig
    """The proxy settings the trials get: the config's, with torch threads following the trial's
    CPUs and the device pinned to the CPU when trials get no GPU."""
    stream_fit: bool
    """Whether the fit actor runs during the sweep (asked for, or needed by adaptive mode)."""
    refit_every: int
    """New rows between two refits of the fit actor; adaptive mode: more than the sweep has, since
    it fits once per round (`round_snapshot`) and a refit on arrival would depend on arrival order."""

    def __post_init__(self):
        asks = self.trial_resources
        # a Ray Train trial asks for memory only: its workers hold the CPUs (actors/sweep/tune_train.py)
        if (self.gpus_per_trial < 0 or self.run_needs.get("CPU", 0) <= 0
                or not (asks.get("CPU", 0) > 0 or asks.get("memory", 0) > 0)):
            raise ValueError(f"a trial needs CPU > 0 (a Ray Train trial: memory) and GPU >= 0, got "
                             f"{asks} for a run that holds {self.run_needs}")
        if self.max_pending < 1 or self.refit_every < 1:
            raise ValueError(f"max_pending and refit_every must be >= 1, got {self.max_pending}, "
                             f"{self.refit_every}")

    def needed_on_one_node(self) -> dict[str, float]:
        """What one node must have for a trial to start (`core.ray_setup.check_resources`)."""
        return {k: v for k, v in self.run_needs.items() if v}

    def tune_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The environment Tune reads when `Tuner.fit` starts: the pending-trial cap, and Tune's
        console tables off unless the user asked for them (the progress bar replaces them)."""
        return {"RAY_AIR_NEW_OUTPUT": environ.get("RAY_AIR_NEW_OUTPUT", "0"),
                "TUNE_MAX_PENDING_TRIALS_PG": str(self.max_pending)}


def plan_sweep(cfg: SweepConfig, cluster: Mapping[str, float]) -> SweepPlan:
    """The plan of `cfg` on a cluster with `cluster` resources ({"CPU": n, "GPU": m, ...})."""
    gpus = trial_gpus(cfg, cluster.get("GPU", 0))
    if gpus and cfg.trials_per_gpu > 1:
        check_trials_fit(cfg)
    placement = trial_placement(cfg.gpus_per_run, cfg.cpus_per_trial, gpus, cluster)
    proxy = cfg.proxy
    if gpus == 0 and not proxy.threads:
        proxy = dataclasses.replace(proxy, threads=max(1, int(cfg.cpus_per_trial)))
    if gpus == 0 and proxy.device == "auto":
        proxy = dataclasses.replace(proxy, device="cpu")
    adaptive = cfg.adaptive > 0
    return SweepPlan(
        gpus_per_trial=gpus, trial_resources=placement.request, run_needs=placement.run_needs,
        max_concurrent=cfg.max_concurrent or placement.max_concurrent,
        train=train_kwargs(cfg.gpus_per_run, cfg.cpus_per_trial).get("train"),
        # Pending trials are what an autoscaler sees. Adaptive rounds make proposals independent
        # of when a trial is created, so adaptive mode needs no smaller cap.
        max_pending=cfg.max_pending or max(MIN_PENDING, int(2 * placement.slots)),
        proxy=proxy,
        stream_fit=cfg.stream_fit or adaptive,
        refit_every=cfg.runs + 1 if adaptive else cfg.adaptive_refit_every)
