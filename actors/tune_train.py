"""A sweep trial whose proxy trains through Ray Train (`sweep --gpus-per-run N`, N > 1).

Ray 2.x's pattern for Train inside Tune (Train V2, docs: "Hyperparameter Tuning with Ray
Tune"): the Tune trial is a function that builds and fits a `TorchTrainer`; the trial itself
only drives it and reserves no CPU or GPU (the N workers reserve theirs when the Train run
starts), and Tune's concurrency is capped at the runs the cluster fits at once, so that no
more driver processes start than Train runs can. The trial reports what a one-process trial
reports (actors/trainer.py): a learning-curve point every `proxy.log_every` steps, then the
runs-table row; both come from rank 0 through a Ray Train callback that forwards them to Tune.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ray.tune.integration.ray_train import TuneReportCallback

from actors.ray_train import CURVE_POINT_KEY
from proxy.config import ProxyConfig
from proxy.distributed import TargetTrainConfig

DRIVER_MEMORY = 512 * 1024**2
"""Memory the Tune trial of a Ray Train run reserves for its own process (no CPU, no GPU).
Tune needs a non-empty request; memory is what the driver does use."""


class ForwardToTune(TuneReportCallback):
    """Forwards rank 0's curve points and its final row to the Tune trial, as the results a
    one-process trial reports; checkpoint reports stay inside Ray Train (Tune would require the
    Searcher's metric in them). Runs in the Train controller."""

    def after_report(self, run_context, metrics, checkpoint):
        from actors.trainer import curve_result, final_result

        first = metrics[0]
        if CURVE_POINT_KEY in first:
            super().after_report(run_context, [curve_result(json.loads(first[CURVE_POINT_KEY]))], None)
        elif "row" in first:
            row = json.loads(first["row"])
            row.pop("train_losses", None)  # the curve reports hold it; a one-process row has none
            super().after_report(run_context, [final_result(row, json.dumps(row))], None)


def train_kwargs(gpus_per_run: int, cpus_per_trial: float) -> dict:
    """The trainable's `train` keyword (actors.trainer.proxy_trial) for Ray Train trials; {}
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


def distributed_trial(config: dict, *, data, proxy: ProxyConfig, train: TargetTrainConfig) -> None:
    """actors.trainer.proxy_trial for `train.workers` > 1: the proxy run as a Ray Train run.
    Its checkpoints live in the trial's folder under a name fixed by the run, so a retried
    trial resumes its Train run from the last checkpoint."""
    import pandas as pd
    import ray
    from ray import tune

    from actors.ray_train import train_distributed
    from actors.trainer import spec_from_config

    spec = spec_from_config(config)
    names = sorted({n for shard_names in spec.state.values() for n in shard_names})
    trial_dir = Path(tune.get_context().get_trial_dir())
    # the run's own documents' features, put once for its workers (data holds them per shard)
    features_ref = ray.put(pd.concat(ray.get([data.shard_features[n] for n in names]), ignore_index=True))
    train_distributed(proxy, train, spec, shard_refs={n: data.shards[n] for n in names},
                      dev_sets_ref=data.dev_sets, features_ref=features_ref,
                      feature_names=data.feature_names,
                      storage_path=train.storage_path or str(trial_dir / "train"),
                      name=f"proxy-{spec.run_id}", callbacks=[ForwardToTune()], report_curve=True)
