"""What a sweep reads before it starts: the pool's shards and dev sets, the per-document
features (joined to each shard once, here), each shard's feature means (for the state sampler)
and the token counts per domain (for the Dirichlet prior). Pure pandas; no Ray."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from causalmix.core.errors import UserError
from causalmix.datapool.pool import Pool, read_shard
from causalmix.features.features_io import read_features
from causalmix.proxy.run import DomainFeatures

SHARD_COLUMNS = ["doc_id", "prompt", "response", "is_text"]


@dataclass
class SweepInputs:
    pool: Pool
    shards: dict[str, pd.DataFrame]
    """{shard name: its documents (SHARD_COLUMNS)}, or what `keep_shard` made of them."""
    shard_names: dict[str, list[str]]
    """{domain: shard names in pool order}."""
    dev_sets: dict
    """{name: proxy.evaluate.DevTask}: the pool's dev sets and lm_eval entries (`Pool.dev_tasks`)."""
    features: pd.DataFrame
    """doc_id, domain and the feature columns, pool documents only."""
    shard_features: dict[str, pd.DataFrame]
    """{shard name: the features of its documents (doc_id, domain, feature columns), one row per
    doc_id}: what a proxy run averages its covariates over is the union of its state's shards."""
    feature_names: tuple[str, ...]
    shard_means: dict[str, np.ndarray]
    """{domain: (n_shards, n_features)} feature means per shard."""
    domain_tokens: dict[str, float]
    """Tokens per domain (features' n_tokens; characters / 4 without it): the prior's base."""
    by_position: DomainFeatures | None = None
    """The same features by (shard, row): what a sweep trial reads its covariates from."""


def load_sweep_inputs(pool_path: str | Path, features_path: str | Path,
                      feature_names: Sequence[str], *,
                      keep_shard: Callable[[pd.DataFrame], object] | None = None) -> SweepInputs:
    """`keep_shard`: what is kept of each shard's documents once read (default: the frame). The
    sweep driver passes `put_documents` (into the object store), so that it holds one shard's
    text at a time, not the pool's."""
    pool = Pool.open(pool_path)
    feature_names = tuple(feature_names)
    features = read_features(features_path)
    missing = [c for c in ("doc_id", "domain", *feature_names) if c not in features.columns]
    if missing:
        raise UserError(f"features {features_path} lack column(s) {missing}")
    keep = ["doc_id", "domain", *feature_names] + (["n_tokens"] if "n_tokens" in features else [])
    features = features[keep].assign(doc_id=features["doc_id"].astype(str))
    by_id = features.drop_duplicates("doc_id").set_index("doc_id")
    shards, shard_names, shard_means, shard_features = {}, {}, {}, {}
    tokens, doc_ids, frames, start, sizes = {}, [], {}, {}, {}
    for domain in pool.domains:
        shard_names[domain] = []
        rows, values, offset = [], [], 0
        for shard in pool.shards(domain):
            frame = read_shard(shard.path)
            frame = frame.assign(doc_id=frame["doc_id"].astype(str))
            if "is_text" not in frame:
                frame["is_text"] = False
            # the index's hash table, built once: `isin` on Arrow strings walks the whole index
            # in Python for every shard (minutes at 800K documents)
            lacking = by_id.index.get_indexer(frame["doc_id"]) < 0
            if lacking.any():
                raise UserError(f"features {features_path} have no row for {int(lacking.sum())} of the "
                                f"{len(frame)} documents of shard {shard.path}, e.g. "
                                f"{frame['doc_id'][lacking].iloc[:3].tolist()}; featurize this pool")
            documents = frame[SHARD_COLUMNS].reset_index(drop=True)
            shards[shard.name] = keep_shard(documents) if keep_shard else documents
            doc_ids.append(frame["doc_id"])
            shard_names[domain].append(shard.name)
            joined = by_id.loc[frame["doc_id"].drop_duplicates(), ["domain", *feature_names]]
            shard_features[shard.name] = joined.reset_index()
            start[shard.name], sizes[shard.name] = offset, len(frame)
            offset += len(frame)
            values.append(by_id.loc[frame["doc_id"], list(feature_names)].reset_index(drop=True))
            rows.append(values[-1].mean().to_numpy(dtype=float))
            tokens[domain] = tokens.get(domain, 0.0) + (
                float(by_id.loc[frame["doc_id"], "n_tokens"].sum()) if "n_tokens" in by_id
                else float((frame["prompt"].str.len() + frame["response"].str.len()).sum()) / 4)
        shard_means[domain] = np.vstack(rows)
        frames[domain] = pd.concat(values, ignore_index=True)
    dev_sets = pool.dev_tasks()
    if not dev_sets:
        raise UserError(f"pool {pool.root} has no dev sets; the sweep needs them for its outcome y")
    pool_ids = pd.Index(pd.concat(doc_ids).unique())
    features = features[pool_ids.get_indexer(features["doc_id"]) >= 0].reset_index(drop=True)
    return SweepInputs(pool, shards, shard_names, dev_sets, features, shard_features, feature_names,
                       shard_means, tokens, DomainFeatures(frames, start, sizes))
