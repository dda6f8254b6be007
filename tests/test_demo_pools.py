"""The demo pools are deterministic, vary in quality from shard to shard, and carry dev sets."""
from __future__ import annotations

import json

import numpy as np

from datapool.demo import DemoPoolSpec, noise_profile, write_demo_pool
from datapool.demo_sources import DOMAINS
from datapool.pool import Pool

SPEC = DemoPoolSpec(small_shards=4, small_docs_per_shard=30, large_shards=8, large_docs_per_shard=30,
                    dev_docs=8)


def _junk_share(text: str) -> float:
    return sum(ch in "~#@%&*^$|\\{}[]<>" for ch in text) / max(1, len(text))


def test_same_seed_same_doc_ids(tmp_path):
    a = Pool.open(write_demo_pool(tmp_path / "a", "demo-small", SPEC)).read()
    b = Pool.open(write_demo_pool(tmp_path / "b", "demo-small", SPEC)).read()
    assert a["doc_id"].tolist() == b["doc_id"].tolist()
    other = DemoPoolSpec(**{**SPEC.__dict__, "seed": 1})
    c = Pool.open(write_demo_pool(tmp_path / "c", "demo-small", other)).read()
    assert a["doc_id"].tolist() != c["doc_id"].tolist()


def test_domains_dev_sets_and_sizes(tmp_path):
    small = Pool.open(write_demo_pool(tmp_path, "demo-small", SPEC))
    large = Pool.open(write_demo_pool(tmp_path, "demo-large", SPEC))
    assert small.domains == large.domains == list(DOMAINS)
    assert large.n_docs() == 2 * small.n_docs()  # 8 x 30 vs 4 x 30 with this spec
    dev = small.dev_sets()
    assert {d.metric for d in dev.values()} == {"nll"}  # a metric that moves on the tiny target
    for d in DOMAINS:
        assert small.read(d)["doc_id"].is_unique


def test_shard_quality_varies_and_large_is_shifted(tmp_path):
    small = Pool.open(write_demo_pool(tmp_path, "demo-small", SPEC))
    profile = json.loads((small.root / "demo_profile.json").read_text())["noise_rate_per_shard"]
    for domain in DOMAINS:
        assert len(set(profile[domain])) == SPEC.small_shards
        clean_shard = int(np.argmin(profile[domain]))
        noisy_shard = int(np.argmax(profile[domain]))
        shards = small.shards(domain)
        clean = __import__("pandas").read_parquet(shards[clean_shard].path)
        noisy = __import__("pandas").read_parquet(shards[noisy_shard].path)
        assert clean["response"].map(_junk_share).mean() < noisy["response"].map(_junk_share).mean() + 1e-9
    large_means = {d: np.mean(noise_profile(SPEC, "demo-large", d)) for d in DOMAINS}
    assert large_means["arithmetic"] < 0.15 < 0.6 < large_means["code"]
    assert large_means["dialog"] < 0.15 < 0.6 < large_means["docs_qa"]
    assert all(0.0 <= r <= SPEC.max_noise for d in DOMAINS for r in noise_profile(SPEC, "demo-large", d))
