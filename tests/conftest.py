"""Shared fixtures. Ray tests use one local instance per session (`ray_local`)."""
from __future__ import annotations

import os
from dataclasses import dataclass
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance with 2 CPUs, shared by every test of the session that asks."""
    import ray

    from causalmix.core.ray_setup import init_ray

    init_ray(num_cpus=2, object_store_memory=512 * 1024**2, log_to_driver=False)
    yield ray
    ray.shutdown()


@dataclass(frozen=True)
class TinyEnv:
    """A miniature demo: small demo-small, demo-large and demo-large-flip pools and tiny models."""

    root: Path
    pool_small: Path
    pool_large: Path
    proxy_model: Path
    target_model: Path


@pytest.fixture(scope="session")
def tiny_env(tmp_path_factory) -> TinyEnv:
    """Built once per session (about 10 s): 4 domains x 4 shards x 40 docs, 512-token
    vocabulary, proxy and target models with a few pretraining steps."""
    import random

    from causalmix.datapool.demo import TARGET_POOLS, DemoPoolSpec, demo_texts_for_tokenizer, write_demo_pool
    from causalmix.datapool.demo_sources import pretraining_corpus
    from causalmix.lm.tiny import TinyModelSpec, build_model_family

    root = tmp_path_factory.mktemp("tiny_env")
    spec = DemoPoolSpec(small_shards=4, small_docs_per_shard=40, large_shards=8,
                        large_docs_per_shard=40, dev_docs=16)
    for name in ("demo-small", *TARGET_POOLS):
        write_demo_pool(root / "pools", name, spec)
    models = build_model_family(
        root / "models", demo_texts_for_tokenizer(root / "pools" / "demo-small"),
        pretraining_corpus(random.Random(0), n_docs=300), vocab_size=512, seed=0,
        proxy_spec=TinyModelSpec(pretrain_steps=20, pretrain_batch=8),
        target_spec=TinyModelSpec(hidden_size=96, num_layers=3, intermediate_size=256,
                                  pretrain_steps=20, pretrain_batch=8))
    return TinyEnv(root, root / "pools" / "demo-small", root / "pools" / "demo-large",
                   models["proxy"], models["target"])
