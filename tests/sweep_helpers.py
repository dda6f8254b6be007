"""Helpers shared by the proxy and sweep tests: a synthetic per-document features table with
the featurizer's schema (doc_id, domain, n_tokens, normalized_loss, hes, writing_style),
whose values shift from shard to shard so that data states differ; and a synthetic sweep
trial (a deterministic outcome of its mixture and data state, no training) for tests of the
driver, the searcher and the fit actor."""
from __future__ import annotations

import hashlib
import json
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from causalmix.datapool.pool import Pool
from causalmix.proxy.config import ProxyConfig


def synthetic_features(pool_dir: Path, out: Path) -> Path:
    frames = []
    for shard in Pool.open(pool_dir).shards():
        docs = pd.read_parquet(shard.path)
        seed = int(hashlib.sha256(shard.name.encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng(seed)
        level = rng.random()
        frames.append(pd.DataFrame({
            "doc_id": docs["doc_id"], "domain": docs["domain"],
            "n_tokens": (docs["prompt"].str.len() + docs["response"].str.len()) // 4,
            "normalized_loss": 0.3 + 0.4 * level + 0.05 * rng.random(len(docs)),
            "hes": 2.0 * level + rng.random(len(docs)),
            "writing_style": rng.random(len(docs)),
        }))
    pd.concat(frames, ignore_index=True).to_parquet(out)
    return out


def tiny_proxy_config(model: Path, **overrides) -> ProxyConfig:
    """A proxy run of a few seconds: 24 samples, short rows, 4 dev documents per task."""
    values = dict(model=str(model), budget=24, max_length=128, rows_per_micro_batch=2,
                  grad_accum=2, dev_limit=4, em_max_new_tokens=12, threads=1, device="cpu")
    values.update(overrides)
    return ProxyConfig(**values)


SYNTHETIC_BEST = {"arithmetic": 0.4, "code": 0.1, "dialog": 0.3, "docs_qa": 0.2}


def synthetic_trial(config, *, data, proxy, finished=None, scramble=True):
    """A sweep trial without training: y peaks at SYNTHETIC_BEST, shifted by the data state,
    with one covariate (the regression estimator fits from 11 runs). `scramble`: sleep a time
    that depends on the run_id only through a hash, so trials finish in an order unrelated to
    their index. Like the real trainer, a run already in `finished` (a resumed sweep's landed
    rows) reports its landed row again instead of running. The workers import this module by
    value: call `cloudpickle.register_pickle_by_value(sweep_helpers)` first."""
    from ray import tune

    if finished and config["run_id"] in finished:
        row = json.loads(finished[config["run_id"]])
        tune.report({"y": row["y"], "run_row": finished[config["run_id"]]})
        return
    if scramble:
        time.sleep(0.05 + 0.35 * (zlib.crc32(config["run_id"].encode()) % 7) / 6)
    mixture = config["mixture"]
    quality = {d: (zlib.crc32(",".join(config["state"][d]).encode()) % 100) / 100 for d in mixture}
    row = {"run_id": config["run_id"], **{f"mix.{d}": w for d, w in mixture.items()},
           "x.arithmetic.quality": quality["arithmetic"],
           "y": -sum((w - SYNTHETIC_BEST[d] * (0.5 + quality[d])) ** 2 for d, w in mixture.items()),
           "status": "ok", "seed": config["seed"], "sampler": config["sampler"], **config["extra"]}
    tune.report({"y": row["y"], "run_row": json.dumps(row)})
