"""What a sweep trial reports to Tune and what it is handed, shared by every trainable (the
one-process proxy trial, actors/sweep/trainer.py; the Ray Train trial, actors/sweep/tune_train.py; the
synthetic trial, actors/sweep/synthetic_trial.py) and by what reads their results (the progress
callback, the Searcher). Plain data: no Ray.

Every `proxy.log_every` optimiser steps a trial reports a learning-curve point; the finished row
goes back to the driver in the trial's last result, the only one holding `ROW_KEY`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from causalmix.proxy.run import RunSpec

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
    """{shard name: ObjectRef of its documents (doc_id, prompt, response, is_text), an Arrow table
    (`actors.sweep.driver.put_documents`)}."""
    dev_sets: object
    """ObjectRef of {domain: (metric kind, dev frame)}."""
    shard_sizes: dict
    """{shard name: its documents}: a trial draws its rows before it fetches a shard."""
    features: dict
    """{domain: ObjectRef of its documents' feature columns, in pool order}
    (`proxy.run.DomainFeatures.frames`)."""
    shard_start: dict
    """{shard name: the row of its first document in its domain's features}."""
    feature_names: tuple[str, ...]


def spec_from_config(config: dict) -> RunSpec:
    """The Searcher's suggestion (see actors.sweep.searcher) as a RunSpec."""
    return RunSpec(run_id=config["run_id"], mixture=dict(config["mixture"]),
                   state={d: tuple(names) for d, names in config["state"].items()},
                   seed=int(config["seed"]), sampler=config.get("sampler", "dirichlet"),
                   extra=dict(config.get("extra", {})))
