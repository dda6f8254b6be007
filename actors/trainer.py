"""The Tune trainable of a sweep: one trial = one proxy run in its own Ray actor (one GPU on a
cluster, one CPU here). A thin shell over `proxy.run.run_proxy`.

The pool's shards, dev sets and features travel through the object store: the driver puts
each shard and the features of its documents (joined once, in datapool/sweep_inputs.py) once and
hands the trial dicts of references; a trial fetches only the shards of its data state and
their features, never the whole pool's features table. Every `proxy.log_every` optimiser
steps the trial reports a learning-curve point (no checkpoint); the finished row goes back to
the driver in the trial's last result, the only one holding `ROW_KEY` (what the runs table,
the progress bar and the Searcher read).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Callable

from proxy.config import ProxyConfig
from proxy.curves import curve_hook
from proxy.distributed import TargetTrainConfig
from proxy.run import RunSpec, run_proxy
from proxy.train import StepInfo

ROW_KEY = "run_row"
"""Result key holding the runs-table row as JSON (Tune would flatten a nested dict); only a
trial's final result has it."""
STEP_KEY = "timesteps_total"
"""Tune's own result key for the x-axis: the optimiser step (MLflowLoggerCallback uses it as the
metric's step)."""


def final_result(row: dict, row_json: str) -> dict:
    """A trial's last report: y, the row, and its dev metrics as numbers a tracker can plot."""
    metrics = {k: float(v) for k, v in row.items()
               if k.startswith("metric.") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"y": row["y"], ROW_KEY: row_json, STEP_KEY: int(row.get("steps") or 0), **metrics}


def curve_result(point: dict) -> dict:
    """An intermediate report. y is NaN: Tune requires the Searcher's metric in every result,
    and a NaN is what no reader of y mistakes for an outcome."""
    return {**point, "y": math.nan, STEP_KEY: point["step"]}


@dataclass
class SweepData:
    """Object-store references of what every trial reads (picklable; refs resolved in the trial)."""

    shards: dict
    """{shard name: ObjectRef of its frame (doc_id, prompt, response, is_text)}."""
    dev_sets: object
    """ObjectRef of {domain: (metric kind, dev frame)}."""
    shard_features: dict
    """{shard name: ObjectRef of the features of its documents (doc_id, domain, feature columns)}."""
    feature_names: tuple[str, ...]


def spec_from_config(config: dict) -> RunSpec:
    """The Searcher's suggestion (see actors.sweep_searcher) as a RunSpec."""
    return RunSpec(run_id=config["run_id"], mixture=dict(config["mixture"]),
                   state={d: tuple(names) for d, names in config["state"].items()},
                   seed=int(config["seed"]), sampler=config.get("sampler", "dirichlet"),
                   extra=dict(config.get("extra", {})))


def proxy_trial(config: dict, *, data: SweepData, proxy: ProxyConfig,
                finished: dict[str, str] | None = None,
                on_step: Callable[[int, float, StepInfo], None] | None = None,
                train: TargetTrainConfig | None = None) -> None:
    """Run one proxy run and report its row. `finished` ({run_id: row JSON}, from a resumed
    sweep's runs.parquet) short-circuits a run whose row already landed but whose trial
    Tune had not marked finished when the sweep was interrupted. `train` with workers > 1:
    the run trains through Ray Train (actors/tune_train.py), reporting the same results."""
    import ray
    import transformers
    from ray import tune

    transformers.utils.logging.disable_progress_bar()
    if finished and config["run_id"] in finished:
        tune.report(final_result(json.loads(finished[config["run_id"]]), finished[config["run_id"]]))
        return
    if train is not None and train.distributed:
        if on_step is not None:
            raise ValueError("on_step is a hook of one-process trials; a Ray Train trial has none")
        from actors.tune_train import distributed_trial

        distributed_trial(config, data=data, proxy=proxy, train=train)
        return
    spec = spec_from_config(config)
    names = sorted({n for shard_names in spec.state.values() for n in shard_names})
    frames = ray.get([data.shards[n] for n in names])
    # per shard: the run reads only its drawn documents' rows, not a concatenated state
    features = dict(zip(names, ray.get([data.shard_features[n] for n in names])))
    row = run_proxy(proxy, spec, shards=dict(zip(names, frames)), dev_sets=ray.get(data.dev_sets),
                    features=features, feature_names=data.feature_names,
                    on_step=curve_hook(proxy.log_every, lambda point: tune.report(curve_result(point)), on_step))
    tune.report(final_result(row, json.dumps(row)))

