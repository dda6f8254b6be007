"""The Tune trainable of a sweep: one trial = one proxy run in its own Ray actor (one GPU on a
cluster, one CPU here). A thin shell over `proxy.run.run_proxy`.

The pool's shards, dev sets and features travel through the object store: the driver puts
each shard once and hands the trial a dict of references; a trial fetches only the shards
of its data state. The finished row goes back to the driver as the trial's one result.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from proxy.config import ProxyConfig
from proxy.run import RunSpec, run_proxy

ROW_KEY = "run_row"
"""Result key holding the runs-table row as JSON (Tune would flatten a nested dict)."""


@dataclass
class SweepData:
    """Object-store references of what every trial reads (picklable; refs resolved in the trial)."""

    shards: dict
    """{shard name: ObjectRef of its frame (doc_id, prompt, response, is_text)}."""
    dev_sets: object
    """ObjectRef of {domain: (metric kind, dev frame)}."""
    features: object
    """ObjectRef of the features frame (doc_id, domain, feature columns)."""
    feature_names: tuple[str, ...]


def spec_from_config(config: dict) -> RunSpec:
    """The Searcher's suggestion (see actors.sweep_searcher) as a RunSpec."""
    return RunSpec(run_id=config["run_id"], mixture=dict(config["mixture"]),
                   state={d: tuple(names) for d, names in config["state"].items()},
                   seed=int(config["seed"]), sampler=config.get("sampler", "dirichlet"),
                   extra=dict(config.get("extra", {})))


def proxy_trial(config: dict, *, data: SweepData, proxy: ProxyConfig,
                on_step: Callable[[int, float], None] | None = None) -> None:
    import ray
    import transformers
    from ray import tune

    transformers.utils.logging.disable_progress_bar()
    spec = spec_from_config(config)
    names = sorted({n for shard_names in spec.state.values() for n in shard_names})
    frames = ray.get([data.shards[n] for n in names])
    row = run_proxy(proxy, spec, shards=dict(zip(names, frames)), dev_sets=ray.get(data.dev_sets),
                    features=ray.get(data.features), feature_names=data.feature_names,
                    on_step=on_step)
    tune.report({"y": row["y"], ROW_KEY: json.dumps(row)})
