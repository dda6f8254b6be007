"""The Tune trainable of a sweep: one trial = one proxy run in its own Ray actor (one GPU on a
cluster, one CPU here). A thin shell over `proxy.run.run_proxy`.

The pool's shards, dev sets and features travel through the object store: the driver puts
each shard, and each domain's features by position (joined once, in datapool/sweep_inputs.py),
once and hands the trial dicts of references; a trial fetches only the shards its draw falls in
(`LazyShards`) and reads its drawn documents' features by (shard, row) from its domains'
frames (`DomainFeatures`, numbers only: Ray maps them without a copy), so what it reads grows
with its documents, not with its data state. Every `proxy.log_every` optimiser
steps the trial reports a learning-curve point (no checkpoint); the finished row goes back to
the driver in the trial's last result, the only one holding `ROW_KEY` (what the runs table,
the progress bar and the Searcher read; design/trial_protocol.py).
"""
from __future__ import annotations

import json
from typing import Callable, Iterator, Mapping

import ray
from ray import tune

from causalmix.design.trial_protocol import SweepData, curve_result, final_result, spec_from_config
from causalmix.proxy.config import ProxyConfig
from causalmix.proxy.curves import curve_hook
from causalmix.proxy.data import LazyShards
from causalmix.proxy.run import DomainFeatures, RunSpec, run_proxy
from causalmix.proxy.train import StepInfo


class ObjectFrames(Mapping):
    """{name: object} read from Ray's object store on first use and kept; pickles as its
    references (what a Ray Train run's workers are handed), not as what was read."""

    def __init__(self, refs: Mapping):
        self.refs = dict(refs)
        self._read: dict = {}

    def __getitem__(self, name):
        if name not in self._read:
            self._read[name] = ray.get(self.refs[name])
        return self._read[name]

    def __contains__(self, name) -> bool:  # Mapping's would read the object
        return name in self.refs

    def __iter__(self) -> Iterator:
        return iter(self.refs)

    def __len__(self) -> int:
        return len(self.refs)

    def __reduce__(self):
        return ObjectFrames, (self.refs,)


def trial_inputs(data: SweepData, spec: RunSpec) -> tuple[LazyShards, DomainFeatures]:
    """The shards of the run's data state, each fetched when the draw first falls in it, and the
    features by position (a domain's frame fetched when first read)."""
    names = sorted({n for shard_names in spec.state.values() for n in shard_names})
    shards = LazyShards({n: data.shard_sizes[n] for n in names},
                        lambda fetch: ray.get([data.shards[n] for n in fetch]))
    return shards, DomainFeatures(ObjectFrames(data.features), data.shard_start, data.shard_sizes)


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
    shards, features = trial_inputs(data, spec)
    row = run_proxy(proxy, spec, shards=shards, dev_sets=ray.get(data.dev_sets),
                    features=features, feature_names=data.feature_names,
                    on_step=curve_hook(proxy.log_every, lambda point: tune.report(curve_result(point)), on_step))
    tune.report(final_result(row, json.dumps(row)))

