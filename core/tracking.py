"""Experiment tracking settings (`--tracking mlflow[=URI]` / `--tracking wandb[=PROJECT]`) and the
MLflow parent run of a sweep or validation. No Ray here: the per-run Tune callbacks are in
actors/sweep/tracking.py."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from causalmix.core.extras import require_extra

# Deferred on purpose, so that importing this module does not load mlflow and wandb (optional
# extras): the function-local imports (of these libraries or of this project's modules that import
# them).

# causal.runs_table.MIX, the runs table's mixture prefix: core/ imports no package above it
MIX = "mix."
TRACKERS = ("mlflow", "wandb")
MLFLOW_DIR = "mlruns"
WANDB_DIR = "wandb"
DEFAULT_WANDB_PROJECT = "causalmix"
ROLE_TAG = "causalmix.role"


@dataclass(frozen=True)
class Tracking:
    """Where a command's runs are tracked."""

    kind: str
    """'mlflow' or 'wandb'."""
    target: str
    """MLflow tracking URI, or the W&B project."""
    offline: bool
    """W&B only: runs are written under the run directory and synced later (`wandb sync`)."""
    directory: str
    """The command's output folder: the default MLflow store and W&B's files go under it."""

    def __post_init__(self):
        if self.kind not in TRACKERS:
            raise ValueError(f"tracking: unknown tracker {self.kind!r}; use mlflow[=URI] or wandb[=PROJECT]")
        if not self.target:
            raise ValueError(f"tracking: {self.kind}= needs a value")

    @property
    def experiment(self) -> str:
        """One MLflow experiment (W&B group) per output folder, so several sweeps can share a store."""
        return f"causalmix/{Path(self.directory).name}"


def parse_tracking(text: str | None, directory: str | Path) -> Tracking | None:
    """`mlflow`, `mlflow=URI`, `wandb`, `wandb=PROJECT` (or empty/None/'none': no tracking).
    The default MLflow store is a local file store under `directory` (works offline); W&B runs
    offline unless WANDB_API_KEY is set."""
    if not text or text == "none":
        return None
    kind, _, value = text.partition("=")
    if kind not in TRACKERS:
        raise ValueError(f"tracking: unknown tracker {kind!r} in {text!r}; use mlflow[=URI] or wandb[=PROJECT]")
    if "=" in text and not value:
        raise ValueError(f"tracking: {text!r} gives no value after '='")

    require_extra(kind, f"--tracking {kind}")
    directory = str(Path(directory).resolve())
    if kind == "mlflow":
        target = value or (Path(directory) / MLFLOW_DIR).as_uri()
        return Tracking("mlflow", target, offline=False, directory=directory)
    return Tracking("wandb", value or DEFAULT_WANDB_PROJECT,
                    offline=not os.environ.get("WANDB_API_KEY"), directory=directory)


def add_tracking_argument(parser) -> None:
    parser.add_argument("--tracking", default=None, metavar="mlflow[=URI]|wandb[=PROJECT]",
                        help="track every run (learning curve, dev metrics, y, its mixture and data state) "
                        f"in MLflow (default store: OUT/{MLFLOW_DIR}, offline) or Weights & Biases "
                        f"(offline under OUT/{WANDB_DIR} unless WANDB_API_KEY is set)")


def mlflow_client(tracking: Tracking):
    """An MlflowClient on the store. MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE
    is set: the default store is one (no database to install or start), so it is allowed here;
    the variable also reaches Ray's MLflowLoggerCallback, which runs in this process."""
    from mlflow import MlflowClient

    if tracking.target.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    # The registry defaults to a sqlite database, which mlflow-skinny cannot open: same store.
    return MlflowClient(tracking_uri=tracking.target, registry_uri=tracking.target)


def experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def numeric_leaves(value, prefix: str = "") -> dict[str, float]:
    """Every finite number of a nested dict, keyed by its dotted path (lists are skipped:
    intervals and the like are not one metric)."""
    out: dict[str, float] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            out.update(numeric_leaves(item, f"{prefix}{key}."))
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        out[prefix.rstrip(".")] = float(value)
    return out


def read_snapshots(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def snapshot_metrics(snapshot: dict) -> dict[str, float]:
    """The numbers of a fit-actor snapshot worth a curve: runs fitted on, fit time, each
    domain's estimated return and each policy's mixture and expected gain."""
    keep = {k: snapshot[k] for k in ("n_runs", "fit_s") if k in snapshot}
    keep["returns"] = snapshot.get("returns", {})
    keep["policies"] = snapshot.get("policies", {})
    return numeric_leaves(keep)


class MlflowParent:
    """The parent run of a tracked command: the per-run children carry its id in
    `mlflow.parentRunId` (the UI nests them); the sweep's fit-actor snapshots and summary go
    into it as metrics."""

    def __init__(self, tracking: Tracking, role: str, params: Mapping | None = None,
                 run_id: str | None = None):
        """`run_id`: the parent of an interrupted sweep, reopened by its resume."""
        self.client = mlflow_client(tracking)
        self.experiment_id = experiment_id(self.client, tracking.experiment)
        if run_id is not None:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            return
        run = self.client.create_run(self.experiment_id, run_name=role, tags={ROLE_TAG: role})
        self.run_id = run.info.run_id
        for key, value in (params or {}).items():
            self.client.log_param(self.run_id, key, str(value)[:500])

    def child_tags(self) -> dict[str, str]:
        return {"mlflow.parentRunId": self.run_id}

    def log_snapshots(self, snapshots: Iterable[dict]) -> int:
        """One step per snapshot version; returns how many were logged."""
        n = 0
        for snapshot in snapshots:
            step = int(snapshot.get("round", snapshot.get("version", n)))
            for key, value in snapshot_metrics(snapshot).items():
                self.client.log_metric(self.run_id, f"fit.{key}", value, step=step)
            n += 1
        return n

    def finish(self, summary: Mapping, status: str = "FINISHED") -> None:
        for key, value in numeric_leaves(dict(summary)).items():
            self.client.log_metric(self.run_id, f"summary.{key}", value)
        self.client.set_terminated(self.run_id, status=status)

    def log_child(self, row: Mapping, curve: list[dict], tags: Mapping[str, str]) -> str:
        """One tracked run of a finished training run (a runs-table row and its curve points)."""
        run = self.client.create_run(self.experiment_id, run_name=str(row.get("run_id")),
                                     tags={**tags, **self.child_tags()})
        run_id = run.info.run_id
        for key in [k for k in row if k.startswith(MIX)]:
            self.client.log_param(run_id, f"mixture/{key[len('mix.'):]}", row[key])
        for point in curve:
            for key, value in numeric_leaves({k: v for k, v in point.items() if k != "step"}).items():
                self.client.log_metric(run_id, key, value, step=int(point["step"]))
        final = {k: v for k, v in row.items() if k == "y" or k.startswith("metric.")}
        for key, value in numeric_leaves(final).items():
            self.client.log_metric(run_id, key, value, step=int(row.get("steps") or 0))
        self.client.set_terminated(run_id)
        return run_id


class WandbParent:
    """The W&B counterpart of core.tracking.MlflowParent: a run of the same group."""

    def __init__(self, tracking: Tracking, role: str, params: Mapping | None = None,
                 run_id: str | None = None):
        """`run_id` is ignored: a resumed sweep's W&B parent is a new run of the same group."""
        import wandb

        # W&B writes its own `wandb/` folder under `dir`: OUT/wandb.
        Path(tracking.directory).mkdir(parents=True, exist_ok=True)
        self.settings = dict(project=tracking.target, group=tracking.experiment, dir=tracking.directory,
                             mode="offline" if tracking.offline else "online", reinit="create_new")
        self.run = wandb.init(job_type=role, name=f"{Path(tracking.directory).name}-{role}",
                              config=dict(params or {}), **self.settings)
        self.run_id = self.run.id

    def child_tags(self) -> dict[str, str]:
        return {}

    def log_snapshots(self, snapshots) -> int:
        n = 0
        for snapshot in snapshots:
            self.run.log({f"fit.{k}": v for k, v in snapshot_metrics(snapshot).items()},
                         step=int(snapshot.get("round", snapshot.get("version", n))))
            n += 1
        return n

    def finish(self, summary: Mapping, status: str = "FINISHED") -> None:
        self.run.summary.update({f"summary.{k}": v for k, v in numeric_leaves(dict(summary)).items()})
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)

    def log_child(self, row: Mapping, curve: list[dict], tags: Mapping[str, str]) -> str:
        import wandb

        mixture = {k[len(MIX):]: v for k, v in row.items() if k.startswith(MIX)}
        run = wandb.init(job_type="run", name=str(row.get("run_id")), config={"mixture": mixture, **tags},
                         **self.settings)
        for point in curve:
            run.log({k: v for k, v in point.items() if k != "step"}, step=int(point["step"]))
        run.log(numeric_leaves({k: v for k, v in row.items() if k == "y" or k.startswith("metric.")}),
                step=int(row.get("steps") or 0))
        run.finish()
        return run.id


def start_parent(tracking: Tracking, role: str, params: Mapping | None = None, run_id: str | None = None):
    return (MlflowParent if tracking.kind == "mlflow" else WandbParent)(tracking, role, params, run_id)


def row_tags(row: Mapping, extra: Iterable[str] = ()) -> dict[str, str]:
    """Tags of a tracked run from its runs-table row: run_id, seed, sampler, mixture, data state."""
    tags = {"causalmix.run_id": str(row.get("run_id", "")), "causalmix.seed": str(row.get("seed", "")),
            "causalmix.sampler": str(row.get("sampler", ""))}
    tags.update({k: f"{float(v):.6g}" for k, v in row.items() if k.startswith(MIX)})
    tags.update({k: str(v) for k, v in row.items() if k.startswith("state.")})
    tags.update({f"causalmix.{k}": str(row[k]) for k in extra if k in row})
    return tags


def track_runs(tracking: Tracking, role: str, rows: Iterable[Mapping], curves: Mapping[str, list],
               *, tags: Iterable[str] = (), summary: Mapping | None = None) -> int:
    """A parent run and one child per finished run (for commands whose runs are Ray tasks, not
    Tune trials: `validate`); returns the number of children."""
    parent = start_parent(tracking, role, summary)
    n = 0
    for row in rows:
        parent.log_child(row, curves.get(row["run_id"], []), row_tags(row, tags))
        n += 1
    parent.finish({"runs": n})
    return n
