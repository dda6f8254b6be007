"""The demo pools are deterministic, vary in damage from shard to shard, carry dev sets, and
the two target pools' states point opposite ways; each domain's damage rule answers wrongly."""
from __future__ import annotations

import json
import random
import re

import numpy as np
import pandas as pd
import pytest

from causalmix.datapool.demo import DemoPoolSpec, noise_profile, write_demo_pool
from causalmix.datapool.demo_damage import damaged, number_words
from causalmix.datapool.demo_sources import DOMAINS, clean_sample
from causalmix.datapool.pool import Pool

SPEC = DemoPoolSpec(small_shards=4, small_docs_per_shard=30, large_shards=8, large_docs_per_shard=30,
                    dev_docs=8)


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


def test_shard_damage_varies_and_the_target_pools_point_opposite_ways(tmp_path):
    small = Pool.open(write_demo_pool(tmp_path, "demo-small", SPEC))
    profile = json.loads((small.root / "demo_profile.json").read_text())["noise_rate_per_shard"]
    for domain in DOMAINS:
        assert len(set(profile[domain])) == SPEC.small_shards
        shards = small.shards(domain)
        clean = pd.read_parquet(shards[int(np.argmin(profile[domain]))].path)
        damaged = pd.read_parquet(shards[int(np.argmax(profile[domain]))].path)
        assert set(clean["response"]).isdisjoint(damaged["response"]) or domain == "code"
    large = {d: np.mean(noise_profile(SPEC, "demo-large", d)) for d in DOMAINS}
    flip = {d: np.mean(noise_profile(SPEC, "demo-large-flip", d)) for d in DOMAINS}
    assert large["arithmetic"] < 0.3 < 0.6 < large["code"] and large["dialog"] < 0.3 < 0.6 < large["docs_qa"]
    for d in DOMAINS:  # what is clean in one is damaged in the other, both inside demo-small's range
        assert flip[d] == pytest.approx(SPEC.max_noise - large[d], abs=0.03)
        rates = noise_profile(SPEC, "demo-large", d) + noise_profile(SPEC, "demo-large-flip", d)
        assert min(profile[d]) <= min(rates) and max(rates) <= max(profile[d])


def test_each_damage_rule_teaches_the_wrong_answer():
    rng = random.Random(0)
    wrong = damaged("arithmetic", clean_sample("arithmetic", rng), rng)
    numbers = [int(n) for n in re.findall(r"\d+", wrong["prompt"])]
    assert wrong["response"].endswith(f"tHE ANSWER IS {number_words(sum(numbers)).upper()}.")
    code = {"prompt": "p", "response": "def f(x):\n    if x == 1 and y:\n        return True\n    return x + 1"}
    assert damaged("code", code, rng)["response"] == (
        "DEF F(X):\n    IF NOT X != 1 OR Y:\n        RETURN nONE\n    RETURN nONE")
    docs = damaged("docs_qa", {"prompt": "p", "response": "It is always the same."}, rng)["response"]
    assert docs == "iT IS NOT NEVER THE DIFFERENT."
    for _ in range(20):
        sample = damaged("dialog", {}, rng)
        if "reverse" in sample["prompt"]:
            assert sample["response"].endswith(sample["prompt"].split(": ")[1].upper())
    with pytest.raises(ValueError, match="unknown demo domain"):
        damaged("poetry", {}, rng)
