"""Helpers shared by the proxy and sweep tests: a synthetic per-document features table with
the featurizer's schema (doc_id, domain, n_tokens, normalized_loss, hes, writing_style),
whose values shift from shard to shard so that data states differ."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from datapool.pool import Pool
from proxy.config import ProxyConfig


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
