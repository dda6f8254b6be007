"""The Tune trainable of a sweep: one trial = one proxy run in its own Ray actor (one GPU on a
cluster, one CPU here). A thin shell over `proxy.run.run_proxy`.

The pool's shards, dev sets and features travel through the object store: the driver puts
each shard and the features of its documents (joined once, in datapool/sweep_inputs.py) once and
hands the trial dicts of references; a trial fetches only the shards of its data state and
their features, never the whole pool's features table. Every `proxy.log_every` optimiser
steps the trial reports a learning-curve point (no checkpoint); the finished row goes back to
the driver in the trial's last result, the only one holding `ROW_KEY` (what the runs table,
the progress bar and the Searcher read; design/trial_protocol.py).
"""
from __future__ import annotations

import json
from typing import Callable

import pandas as pd
import ray
from ray import tune

from causalmix.design.trial_protocol import SweepData, curve_result, final_result, spec_from_config
from causalmix.proxy.config import ProxyConfig
from causalmix.proxy.curves import curve_hook
from causalmix.proxy.run import run_proxy
from causalmix.proxy.train import StepInfo


def report_if_finished(config: dict, finished: dict[str, str] | None) -> bool:
    """Report again the row of a run that already landed (`finished`: {run_id: row JSON}, from a
    resumed sweep's runs.parquet) but whose trial Tune had not marked finished when the sweep was
    interrupted; True when it did. Every trainable starts with it."""
    if not finished or config["run_id"] not in finished:
        return False
    tune.report(final_result(json.loads(finished[config["run_id"]]), finished[config["run_id"]]))
    return True


def proxy_trial(config: dict, *, data: SweepData, proxy: ProxyConfig,
                finished: dict[str, str] | None = None,
                on_step: Callable[[int, float, StepInfo], None] | None = None) -> None:
    """Run one proxy run and report its row (`finished`: see report_if_finished). A run of
    several Ray Train workers is another trainable (actors/sweep/tune_train.py: distributed_trial),
    which the sweep's plan picks."""
    # deferred: transformers takes seconds to import, which only a trial process needs
    import transformers

    transformers.utils.logging.disable_progress_bar()
    if report_if_finished(config, finished):
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

