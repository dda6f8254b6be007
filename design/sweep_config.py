"""The settings of `launch.py sweep` and the names of what it writes in RUN_DIR: what the driver
(actors/sweep/driver.py), its plan (design/sweep_plan.py), the CLI and the Python API share."""
from __future__ import annotations

from dataclasses import dataclass

from causalmix.core.tracking import parse_tracking
from causalmix.design.sweep_design import SweepDesign

TUNE_DIR = "tune"
RUNS_FILE = "runs.parquet"
CONFIG_FILE = "sweep_config.yaml"
TRACKING_FILE = "tracking.json"
SUMMARY_FILE = "sweep.json"
MODEL_DIR = "model"


@dataclass(frozen=True)
class SweepConfig(SweepDesign):
    """Settings of `launch.py sweep` (which runs: SweepDesign's fields; how they train on the
    cluster: the fields below)."""

    out: str = ""
    """RUN_DIR: runs.parquet, the Tune experiment and the sweep's records."""
    adaptive_refit_every: int = 4
    """Without adaptive mode: the fit actor refits (policy.jsonl) after this many new runs.
    In adaptive mode it fits once per round instead."""
    final_model: bool = True
    """Write the fit actor's model on every run to RUN_DIR/model at the end (the demo turns it
    off: its `fit` stage is the one fit every later stage uses)."""
    stream_fit: bool = True
    """Run the fit actor during the sweep (refits as runs land, policy snapshots in
    policy.jsonl, the final model in RUN_DIR/model); adaptive mode needs it."""
    cpus_per_trial: float = 1.0
    """CPUs per trial (torch threads follow)."""
    gpus_per_trial: float | None = None
    """GPUs per trial; None: 1 / trials_per_gpu when the cluster has GPUs, else 0."""
    gpus_per_run: int = 1
    """Ray Train workers per proxy run (one GPU each on a GPU cluster, a CPU process of
    `cpus_per_trial` CPUs each on CPU); > 1 trains each trial's run through Ray Train with FSDP
    (actors/sweep/tune_train.py), the trial only driving it. 1: the run trains in the trial."""
    trials_per_gpu: int = 1
    """Proxy trials sharing one GPU (each asks Tune for 1/k of a GPU); refused when
    the memory plan (proxy/memory.py) says k trials of the proxy model do not fit the GPU's memory
    (known from CAUSALMIX_GPU_MEMORY_GB or a GPU visible to the driver)."""
    max_concurrent: int = 0
    """Cap on trials at once (0: as many as the cluster fits, growing with the autoscaler)."""
    max_pending: int = 0
    """Trials Tune may have waiting for resources (0: max(16, 2 x the slots the cluster has now)).
    Pending trials are what an autoscaler sees; Tune's default for a custom Searcher is 1,
    which would start one trial at a time."""
    max_failures: int = 2
    """Retries of a trial whose actor, node or code failed."""
    address: str | None = None
    """Ray address (None: RAY_ADDRESS or a local Ray)."""
    resume: bool = False
    """Restore the interrupted sweep in `out` and run only what is missing."""
    progress: bool = True
    """Progress bar on stderr."""
    tracking: str = ""
    """Experiment tracker of the runs: "mlflow" (a local store in RUN_DIR/mlruns), "mlflow=URI",
    "wandb" (offline under RUN_DIR/wandb unless WANDB_API_KEY is set), "wandb=PROJECT";
    empty: none. One tracked run per proxy run with its learning curve."""

    def __post_init__(self):
        super().__post_init__()
        if self.cpus_per_trial <= 0 or (self.gpus_per_trial is not None and self.gpus_per_trial < 0):
            raise ValueError("cpus_per_trial must be > 0 and gpus_per_trial >= 0")
        if self.trials_per_gpu < 1:
            raise ValueError(f"trials_per_gpu must be >= 1, got {self.trials_per_gpu}")
        if self.trials_per_gpu > 1 and self.gpus_per_trial is not None:
            raise ValueError("give trials_per_gpu or gpus_per_trial, not both")
        if self.gpus_per_run < 1:
            raise ValueError(f"gpus_per_run must be >= 1, got {self.gpus_per_run}")
        if self.gpus_per_run > 1 and (self.trials_per_gpu > 1 or self.gpus_per_trial is not None):
            raise ValueError("gpus_per_run > 1 gives each worker of a run one GPU: drop "
                             "trials_per_gpu and gpus_per_trial")
        if self.adaptive_refit_every < 1:
            raise ValueError(f"adaptive_refit_every must be >= 1, got {self.adaptive_refit_every}")
        if self.max_concurrent < 0 or self.max_failures < 0 or self.max_pending < 0:
            raise ValueError("max_concurrent, max_pending and max_failures must be >= 0")
        parse_tracking(self.tracking, self.out or ".")

    # Fields that define the sweep: a resume must not change them.
    IDENTITY = ("pool", "features", "runs", "seed", "proxy", "state", "feature_names", "prior",
                "prior_temperature", "max_ratio", "adaptive", "adaptive_radius",
                "adaptive_round", "adaptive_refit_every", "adaptive_fit")
