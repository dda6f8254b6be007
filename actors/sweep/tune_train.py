"""A sweep trial whose proxy trains through Ray Train (`sweep --gpus-per-run N`, N > 1).

Ray 2.x's pattern for Train inside Tune (Train V2, docs: "Hyperparameter Tuning with Ray
Tune"): the Tune trial is a function that builds and fits a `TorchTrainer`; the trial itself
only drives it and reserves no CPU or GPU (the N workers reserve theirs when the Train run
starts), and Tune's concurrency is capped at the runs the cluster fits at once, so that no
more driver processes start than Train runs can. The trial reports what a one-process trial
reports (actors/sweep/trainer.py): a learning-curve point every `proxy.log_every` steps, then the
runs-table row; both come from rank 0 through a Ray Train callback that forwards them to Tune.
"""
from __future__ import annotations

import json
from pathlib import Path

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from causalmix.actors.target.ray_train import CURVE_POINT_KEY, train_distributed
from causalmix.actors.sweep.trainer import report_if_finished, trial_inputs
from causalmix.design.trial_protocol import curve_result, final_result, spec_from_config
from causalmix.proxy.config import ProxyConfig
from causalmix.target.distributed import TargetTrainConfig


class ForwardToTune(TuneReportCallback):
    """Forwards rank 0's curve points and its final row to the Tune trial, as the results a
    one-process trial reports; checkpoint reports stay inside Ray Train (Tune would require the
    Searcher's metric in them). Runs in the Train controller."""

    def after_report(self, run_context, metrics, checkpoint):
        first = metrics[0]
        if CURVE_POINT_KEY in first:
            super().after_report(run_context, [curve_result(json.loads(first[CURVE_POINT_KEY]))], None)
        elif "row" in first:
            row = json.loads(first["row"])
            row.pop("train_losses", None)  # the curve reports hold it; a one-process row has none
            super().after_report(run_context, [final_result(row, json.dumps(row))], None)


def distributed_trial(config: dict, *, data, proxy: ProxyConfig, train: TargetTrainConfig,
                      finished: dict[str, str] | None = None) -> None:
    """The trainable of a sweep whose runs have `train.workers` > 1, reporting what
    actors.sweep.trainer.proxy_trial reports: the proxy run as a Ray Train run. Its checkpoints live in
    the trial's folder under a name fixed by the run, so a retried trial resumes its Train run
    from the last checkpoint. `finished`: see actors.sweep.trainer.report_if_finished."""
    if report_if_finished(config, finished):
        return
    spec = spec_from_config(config)
    names = sorted({n for shard_names in spec.state.values() for n in shard_names})
    trial_dir = Path(tune.get_context().get_trial_dir())
    # the features by position, as references: each worker reads its drawn rows' domains
    features_ref = ray.put(trial_inputs(data, spec)[1])
    train_distributed(proxy, train, spec, shard_refs={n: data.shards[n] for n in names},
                      dev_sets_ref=data.dev_sets, features_ref=features_ref,
                      feature_names=data.feature_names,
                      storage_path=train.storage_path or str(trial_dir / "train"),
                      name=f"proxy-{spec.run_id}", callbacks=[ForwardToTune()], report_curve=True)
