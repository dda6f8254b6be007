"""The sweep driver's parts without Ray: the plan (resources, pending cap, proxy overrides,
fit-actor cadence, resume state), the checks on RUN_DIR, the one writer of the runs table, and
the per-shard features a trial gets instead of the pool's whole table."""
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from causalmix.design.sweep_config import CONFIG_FILE, RUNS_FILE, TRACKING_FILE, SweepConfig
from causalmix.design.sweep_design import config_yaml
from causalmix.design.sweep_plan import ResumeState, SweepPlan, check_sweep_out, plan_sweep
from causalmix.actors.sweep.progress import SweepProgress, trial_name
from causalmix.design.trial_protocol import ROW_KEY
from causalmix.core.errors import UserError
from causalmix.proxy.config import ProxyConfig


def config(tmp_path, **overrides):
    values = dict(pool="p", features="f", out=str(tmp_path), runs=6,
                  proxy=ProxyConfig(model="m"), progress=False)
    values.update(overrides)
    return SweepConfig(**values)


def test_cpu_cluster_plan_pins_trials_to_cpu_threads(tmp_path):
    plan = plan_sweep(config(tmp_path, cpus_per_trial=2.0), {"CPU": 8.0})
    assert plan.gpus_per_trial == 0.0 and plan.trial_resources == {"CPU": 2.0, "GPU": 0.0}
    assert plan.needed_on_one_node() == {"CPU": 2.0}
    assert (plan.proxy.device, plan.proxy.threads) == ("cpu", 2)
    assert plan.max_pending == 16  # 4 slots: the floor of 16 pending trials
    # settings the user gave are kept
    given = plan_sweep(config(tmp_path, proxy=ProxyConfig(model="m", threads=3, device="cuda")), {"CPU": 8.0})
    assert (given.proxy.device, given.proxy.threads) == ("cuda", 3)


def test_gpu_cluster_plan_sizes_pending_trials_from_the_slots(tmp_path):
    plan = plan_sweep(config(tmp_path), {"CPU": 64.0, "GPU": 16.0})
    assert plan.trial_resources == {"CPU": 1.0, "GPU": 1.0}
    assert plan.proxy == ProxyConfig(model="m")  # GPU trials: device and threads left alone
    assert plan.max_pending == 32  # 16 slots, twice as many pending
    shared = plan_sweep(config(tmp_path, trials_per_gpu=4), {"CPU": 64.0, "GPU": 16.0})
    assert shared.gpus_per_trial == 0.25 and shared.max_pending == 128
    assert plan_sweep(config(tmp_path, max_pending=5), {"CPU": 64.0, "GPU": 16.0}).max_pending == 5


def test_fit_actor_cadence(tmp_path):
    plain = plan_sweep(config(tmp_path, adaptive_refit_every=3), {"CPU": 2.0})
    assert plain.stream_fit and plain.refit_every == 3
    assert not plan_sweep(config(tmp_path, stream_fit=False), {"CPU": 2.0}).stream_fit
    # adaptive mode needs the fit actor, and fits once per round, never on arrival
    adaptive = plan_sweep(config(tmp_path, stream_fit=False, adaptive=0.5), {"CPU": 2.0})
    assert adaptive.stream_fit and adaptive.refit_every == 7


def test_tune_env_keeps_what_the_user_set(tmp_path):
    plan = plan_sweep(config(tmp_path, max_pending=9), {"CPU": 2.0})
    assert plan.tune_env({}) == {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_MAX_PENDING_TRIALS_PG": "9"}
    assert plan.tune_env({"RAY_AIR_NEW_OUTPUT": "1"})["RAY_AIR_NEW_OUTPUT"] == "1"


def test_plan_refuses_an_impossible_request(tmp_path):
    plan = plan_sweep(config(tmp_path), {"CPU": 2.0})
    with pytest.raises(ValueError, match="max_pending"):
        SweepPlan(**{**plan.__dict__, "max_pending": 0})
    with pytest.raises(ValueError, match="CPU > 0"):
        SweepPlan(**{**plan.__dict__, "trial_resources": {"CPU": 0.0, "GPU": 0.0}})


def test_resume_state_reads_the_landed_rows_and_the_tracker_parent(tmp_path):
    assert ResumeState.read(tmp_path) == ResumeState()
    rows = pd.DataFrame({"run_id": ["run-00001", "run-00000"], "y": [np.float64(-1.5), 0.25],
                         "steps": np.array([3, 4], dtype=np.int64)})
    rows.to_parquet(tmp_path / RUNS_FILE)
    (tmp_path / TRACKING_FILE).write_text(json.dumps({"tracking": "mlflow", "parent_run_id": "abc"}))
    state = ResumeState.read(tmp_path)
    assert state.parent_run_id == "abc" and set(state.finished) == {"run-00000", "run-00001"}
    assert json.loads(state.finished["run-00001"]) == {"run_id": "run-00001", "y": -1.5, "steps": 3}
    assert sorted(r["run_id"] for r in state.rows()) == ["run-00000", "run-00001"]


def test_run_dir_checks_name_the_problem(tmp_path):
    check_sweep_out(config(tmp_path), tmp_path)  # empty: a new sweep may start
    with pytest.raises(UserError, match="holds no sweep"):
        check_sweep_out(config(tmp_path, resume=True), tmp_path)
    cfg = config(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(config_yaml(cfg))
    with pytest.raises(UserError, match="already holds a sweep"):
        check_sweep_out(cfg, tmp_path)
    with pytest.raises(UserError, match="runs, seed differ"):
        check_sweep_out(config(tmp_path, runs=7, seed=1, resume=True), tmp_path)
    with pytest.raises(UserError, match="--tracking mlflow differs"):
        check_sweep_out(config(tmp_path, tracking="mlflow", resume=True), tmp_path)
    with pytest.raises(UserError, match="no restorable Tune experiment"):
        check_sweep_out(config(tmp_path, resume=True, progress=True, proxy=ProxyConfig(model="m", log_every=3)),
                        tmp_path)  # neither the progress bar nor log_every are part of the sweep
    assert yaml.safe_load((tmp_path / CONFIG_FILE).read_text())["runs"] == 6


class Feed:
    def __init__(self):
        self.rows = []

    def feed(self, rows):
        self.rows.extend(rows)


def result(row=None, error=None, run_id=None):
    return SimpleNamespace(metrics={ROW_KEY: json.dumps(row)} if row else {}, error=error,
                           config={"run_id": run_id or (row or {}).get("run_id")})


def test_the_progress_callback_is_the_one_writer_of_the_runs_table(tmp_path):
    path = tmp_path / RUNS_FILE
    fit = Feed()
    progress = SweepProgress(str(path), total=3, fit=fit, show=False)
    trial = SimpleNamespace(config={"run_id": "run-00000"}, trial_id="t0")
    assert trial_name(trial) == "run-00000"
    assert trial_name(SimpleNamespace(config={}, trial_id="t9")) == "t9"
    progress.on_trial_recover(0, [], trial)
    progress.on_trial_result(0, [], trial, {"y": float("nan"), "train_loss": 1.0})  # a curve point
    assert not path.exists() and fit.rows == []
    progress.on_trial_result(0, [], trial, {ROW_KEY: json.dumps({"run_id": "run-00000", "y": 1.0})})
    assert pd.read_parquet(path).to_dict("records") == [{"run_id": "run-00000", "y": 1.0, "attempts": 2}]
    assert fit.rows == [{"run_id": "run-00000", "y": 1.0, "attempts": 2}]
    # After Tuner.fit: a landed row is kept as it is (attempts), a missing one lands, errors are named.
    errors = progress.land_results([result({"run_id": "run-00000", "y": 5.0}),
                                    result({"run_id": "run-00001", "y": 2.0}),
                                    result(error=RuntimeError("boom"), run_id="run-00002")])
    assert errors == [{"run_id": "run-00002", "error": "boom"}]
    table = pd.read_parquet(path)
    assert table["run_id"].tolist() == ["run-00000", "run-00001"] and table["y"].tolist() == [1.0, 2.0]
    assert table["attempts"].iloc[0] == 2 and np.isnan(table["attempts"].iloc[1])
    # the row that landed only here reaches the fit actor too, the one it had already got does not again
    assert [row["run_id"] for row in fit.rows] == ["run-00000", "run-00001"]


def test_a_trial_gets_the_features_of_its_state_shards_only(tmp_path):
    """The per-shard features joined once on the driver give a run the same covariates as the
    pool's whole features table did."""
    from causalmix.datapool.sweep_inputs import load_sweep_inputs
    from causalmix.causal.covariates import sample_covariates
    from causalmix.datapool.demo import DemoPoolSpec, write_demo_pool
    from causalmix.proxy.run import state_fallback
    from sweep_helpers import synthetic_features

    pool = write_demo_pool(tmp_path / "pools", "demo-small",
                           DemoPoolSpec(small_shards=3, small_docs_per_shard=12, dev_docs=4))
    names = ("normalized_loss", "hes")
    inputs = load_sweep_inputs(pool, synthetic_features(pool, tmp_path / "f.parquet"), names)
    assert set(inputs.shard_features) == set(inputs.shards)
    for name, frame in inputs.shard_features.items():
        assert list(frame.columns) == ["doc_id", "domain", *names]
        assert frame["doc_id"].tolist() == inputs.shards[name]["doc_id"].tolist()
    assert sum(len(f) for f in inputs.shard_features.values()) == len(inputs.features)
    kept = []  # the driver's keep_shard (ray.put) gets each shard as it is read
    handed = load_sweep_inputs(pool, tmp_path / "f.parquet", names, keep_shard=lambda f: kept.append(f) or len(kept))
    assert [handed.shards[n] for n in inputs.shards] == list(range(1, len(kept) + 1))
    assert all(f.equals(inputs.shards[n]) for f, n in zip(kept, inputs.shards))
    state = {d: tuple(shards[:2]) for d, shards in inputs.shard_names.items()}
    state_shards = sorted(n for shards in state.values() for n in shards)
    part = pd.concat([inputs.shard_features[n] for n in state_shards], ignore_index=True)
    assert len(part) < len(inputs.features)
    domains = list(inputs.shard_names)
    drawn = [i for d in domains[:2] for i in inputs.shards[state[d][1]]["doc_id"][:5]]

    def covariates(features):
        fallback = state_fallback(features, inputs.shards, state, domains[2:], names)
        return sample_covariates(features, drawn, domains, names, fallback=fallback)

    got = covariates(part)
    assert got == covariates(inputs.features) and all(np.isfinite(v) for v in got.values())
