"""`--trial synthetic`: a sweep trial that draws its run's data exactly as a proxy run does and
scores it with a known function instead of training, in a controlled wall time.

What it shares with `actors.sweep.trainer.proxy_trial`: what it reads of the object store
(`trial_inputs`: the shards its draw falls in, its documents' features by position), the sample drawn by `proxy.run.draw_run` (same seed, same
documents, the tokenizer of `proxy.model`) and the covariates averaged over what it drew
(`proxy.run.run_covariates`). What replaces training and the dev suite: `known_outcome`, a fixed
function of the mixture and the covariates, and a sleep up to `trial_s` seconds from the trial's
start (a sleep does not compete with the other trials for a small machine's CPUs, so what a
benchmark measures is the sweep's machinery, not the proxy model). The row has the columns of a
proxy run's row that the runs table, the fit and the progress bar read, plus `began`/`ended`
(wall clock), `draw_s` (the data draw's seconds) and `draw_cpu_s` (its CPU seconds, the trial
thread's: wall growing with CPU flat is contention for the CPUs, not more work).
"""
from __future__ import annotations

import functools
import json
import time

import numpy as np
from ray import tune

from causalmix.actors.sweep.trainer import report_if_finished, trial_inputs
from causalmix.causal.runs_table import MIX
from causalmix.design.trial_protocol import SweepData, final_result, spec_from_config
from causalmix.lm.loading import load_tokenizer
from causalmix.proxy.config import ProxyConfig
from causalmix.proxy.run import draw_run, run_covariates

SYNTHETIC_MODEL = "synthetic"


@functools.lru_cache(maxsize=4)
def _tokenizer(model: str):
    """One tokenizer per trial actor (Tune reuses actors), as a proxy run loads one per run."""
    return load_tokenizer(model)


def known_outcome(mixture: dict[str, float], covariates: dict[str, float], seed: int) -> float:
    """y = sum_d w_d (1 - x.<d>.normalized_loss) - sum_d (w_d - 1/k)^2 + N(0, 0.01^2): a return
    per domain that falls with its drawn documents' loss, a penalty on lopsided mixtures, and
    seeded noise (the same run scores the same on a retry)."""
    k = len(mixture)
    gain = sum(w * (1.0 - covariates.get(f"x.{d}.normalized_loss", 0.0)) for d, w in mixture.items())
    spread = sum((w - 1.0 / k) ** 2 for w in mixture.values())
    return float(gain - spread + 0.01 * np.random.default_rng(seed).standard_normal())


def synthetic_row(config: dict, *, data: SweepData, proxy: ProxyConfig) -> dict:
    """The run's row: its data drawn as `proxy_trial` draws it, y from `known_outcome`."""
    began, began_cpu = time.time(), time.thread_time()
    spec = spec_from_config(config)
    shards, features = trial_inputs(data, spec)
    sample, _ = draw_run(proxy, spec, shards, _tokenizer(proxy.model))
    covariates = run_covariates(spec, sample, shards=shards, features=features,
                                feature_names=data.feature_names)
    row = {"run_id": spec.run_id, **{f"{MIX}{d}": float(w) for d, w in spec.mixture.items()}, **covariates,
           "y": known_outcome(spec.mixture, covariates, spec.seed), "seed": int(spec.seed),
           "model": SYNTHETIC_MODEL, "tokens": int(sum(sample.tokens.values())), "status": "ok",
           "sampler": spec.sampler, "draw_s": round(time.time() - began, 3),
           "draw_cpu_s": round(time.thread_time() - began_cpu, 3), "began": began}
    row.update({f"docs.{d}": int(n) for d, n in sample.counts.items()})
    row.update({f"state.{d}": ",".join(ns) for d, ns in spec.state.items()})
    row.update(spec.extra)
    return row


def synthetic_trial(config: dict, *, data: SweepData, proxy: ProxyConfig, finished=None,
                    trial_s: float = 1.0) -> None:
    """A Tune trainable with `proxy_trial`'s signature (plus `trial_s`); reports one final result."""
    if report_if_finished(config, finished):
        return
    row = synthetic_row(config, data=data, proxy=proxy)
    time.sleep(max(0.0, trial_s - (time.time() - row["began"])))
    row["ended"] = time.time()
    row["wall_s"] = round(row["ended"] - row["began"], 3)
    tune.report(final_result(row, json.dumps(row)))
