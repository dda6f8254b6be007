"""Reproducible adaptive sweeps (docs/architecture.md): the same seed and settings give the same runs table
whatever the concurrency and the order in which trials finish. The trial is synthetic (a
deterministic outcome of its mixture and data state, after a sleep that scrambles the
finish order); everything else is the real driver: Tune, the searcher's rounds, the fit
actor's round snapshots on the regression estimator."""
import json

import numpy as np
import pandas as pd
import pytest

from causalmix.actors.sweep.driver import run_sweep
from causalmix.design.sweep_config import SweepConfig
import sweep_helpers
from sweep_helpers import synthetic_features, synthetic_trial, tiny_proxy_config

pytestmark = pytest.mark.ray


@pytest.mark.slow
def test_adaptive_sweep_gives_the_same_table_at_one_and_two_trials_at_a_time(ray_local, tiny_env, tmp_path):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sweep_helpers)  # the workers cannot import tests/
    features = synthetic_features(tiny_env.pool_small, tmp_path / "features.parquet")
    tables = []
    for concurrent in (1, 2):
        cfg = SweepConfig(pool=str(tiny_env.pool_small), features=str(features), out=str(tmp_path / f"c{concurrent}"),
                          runs=24, seed=3, adaptive=0.6, adaptive_round=6, max_concurrent=concurrent,
                          adaptive_fit={"estimator": "regression", "treatment_featurizer": "log-only"},
                          proxy=tiny_proxy_config(tiny_env.proxy_model), progress=False, final_model=False)
        summary = run_sweep(cfg, trainable=synthetic_trial)
        assert summary["status"] == "ok"
        tables.append(pd.read_parquet(tmp_path / f"c{concurrent}" / "runs.parquet")
                      .drop(columns=["attempts"], errors="ignore"))
    one, two = tables
    assert len(one) == 24
    assert (one["sampler"] == "adaptive").sum() >= 4       # the rounds did steer some runs
    pd.testing.assert_frame_equal(one, two)
    snapshots = [json.loads(line) for line in (tmp_path / "c1" / "policy.jsonl").read_text().splitlines()]
    assert sorted(s["round"] for s in snapshots) == [2, 3]  # round 1 (6 runs) is too few to fit
    assert all(s["n_runs"] == 6 * s["round"] for s in snapshots)
    assert not (tmp_path / "c1" / "model").exists()        # final_model=False: the caller fits once
    assert np.isfinite(one["y"]).all()
