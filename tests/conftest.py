"""Shared fixtures. Ray tests use one local instance per session (`ray_local`)."""
from __future__ import annotations

import os
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

    from core.ray_setup import init_ray

    init_ray(num_cpus=2, object_store_memory=512 * 1024**2, log_to_driver=False)
    yield ray
    ray.shutdown()
