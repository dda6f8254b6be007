"""The sweep on Ray Tune, end to end on the tiny model: the CLI, a trial killed mid-run,
and an interrupted sweep resumed. Per-run work is tiny (24 samples, 4 dev docs per task)."""
import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import yaml
from ray.tune import Callback

import launch
from actors.sweep import SweepConfig, run_sweep
from actors.trainer import ROW_KEY
from sweep_helpers import synthetic_features, tiny_proxy_config

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def features(tiny_env, tmp_path_factory):
    return synthetic_features(tiny_env.pool_small, tmp_path_factory.mktemp("features") / "f.parquet")


def sweep_config(tiny_env, features, out, **overrides):
    values = dict(pool=str(tiny_env.pool_small), features=str(features), out=str(out), runs=2,
                  proxy=tiny_proxy_config(tiny_env.proxy_model), progress=False)
    values.update(overrides)
    return SweepConfig(**values)


def check_runs_table(path: Path, n: int, domains) -> pd.DataFrame:
    runs = pd.read_parquet(path)
    assert len(runs) == n and runs["run_id"].is_unique
    assert sorted(runs["run_id"]) == [f"run-{i:05d}" for i in range(n)]
    mix = runs[[f"mix.{d}" for d in domains]]
    assert (mix >= 0).all().all() and ((mix.sum(axis=1) - 1).abs() < 1e-9).all()
    covs = [c for c in runs.columns if c.startswith("x.")]
    assert len(covs) == 3 * len(domains) and runs[covs].notna().all().all()
    assert runs["y"].notna().all() and (runs["status"] == "ok").all()
    return runs


def test_four_run_sweep_from_the_cli(ray_local, tiny_env, features, tmp_path, capsys):
    out = tmp_path / "sweep"
    config = tmp_path / "sweep.yaml"
    proxy = tiny_proxy_config(tiny_env.proxy_model).__dict__
    config.write_text(yaml.safe_dump({"proxy": proxy, "state": {"min_shards": 1}}))
    argv = ["sweep", "--config", str(config), "--pool", str(tiny_env.pool_small), "--features",
            str(features), "--model", str(tiny_env.proxy_model), "--runs", "4", "--out", str(out),
            "--no-progress"]
    assert launch.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "ok" and summary["runs_done"] == 4
    runs = check_runs_table(out / "runs.parquet", 4, ["arithmetic", "code", "dialog", "docs_qa"])
    assert (runs["sampler"] == "dirichlet").all() and runs["seed"].tolist() == [0, 1, 2, 3]
    assert runs[[c for c in runs if c.startswith("mix.")]].drop_duplicates().shape[0] == 4
    record = json.loads((out / "sweep.json").read_text())
    assert record["state_sampler"]["config"]["window_prob"] == 0.75 and "versions" in record
    # A finished sweep resumed runs nothing again; a second sweep into the same dir is refused.
    assert launch.main(["sweep", "--out", str(out), "--resume", "--no-progress"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet"), runs)
    assert launch.main(argv) == 2
    assert "already holds a sweep" in capsys.readouterr().err


def test_bad_input_names_the_problem(ray_local, tiny_env, tmp_path, capsys):
    argv = ["sweep", "--pool", str(tiny_env.pool_small), "--features", str(tmp_path / "none.parquet"),
            "--model", str(tiny_env.proxy_model), "--out", str(tmp_path / "o")]
    assert launch.main(argv) == 2
    assert "none.parquet" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert launch.main(["sweep", "--out", str(tmp_path / "o"), "--resume"]) == 2


def test_killed_trial_is_retried_and_lands_once(ray_local, tiny_env, features, tmp_path):
    marker = tmp_path / "killed-once"

    def kill_first_attempt(step, loss, info):
        if step == 2 and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    cfg = sweep_config(tiny_env, features, tmp_path / "sweep", runs=3, max_failures=2)
    summary = run_sweep(cfg, trainable_kwargs={"on_step": kill_first_attempt})
    assert marker.exists() and summary["status"] == "ok"
    runs = check_runs_table(tmp_path / "sweep" / "runs.parquet", 3, ["arithmetic", "code", "dialog", "docs_qa"])
    assert sorted(runs["attempts"]) == [1, 1, 2]


class InterruptOnce(Callback):
    """Sends the driver the signal Tune treats as Ctrl+C, once, after the first finished run."""

    def __init__(self, marker: str):
        self.marker = marker

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if ROW_KEY in result and not os.path.exists(self.marker):  # not a learning-curve report
            Path(self.marker).write_text("interrupted")
            os.kill(os.getpid(), signal.SIGUSR1)


def test_interrupted_sweep_resumes_only_what_is_missing(ray_local, tiny_env, features, tmp_path):
    out = tmp_path / "sweep"
    cfg = sweep_config(tiny_env, features, out, runs=3, max_concurrent=1)
    first = run_sweep(cfg, callbacks=[InterruptOnce(str(tmp_path / "marker"))])
    assert first["status"] == "interrupted" and 1 <= first["runs_done"] < 3
    before = pd.read_parquet(out / "runs.parquet")
    second = run_sweep(SweepConfig(**{**cfg.__dict__, "resume": True}))
    assert second["status"] == "ok" and second["runs_done"] == 3
    runs = check_runs_table(out / "runs.parquet", 3, ["arithmetic", "code", "dialog", "docs_qa"])
    kept = runs.set_index("run_id").loc[before["run_id"]]
    assert kept["wall_s"].tolist() == before["wall_s"].tolist()  # finished runs were not rerun
