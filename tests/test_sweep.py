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

from causalmix import launch
import sweep_helpers
from causalmix.actors.sweep.driver import run_sweep
from causalmix.design.sweep_config import SweepConfig
from causalmix.design.trial_protocol import ROW_KEY
from causalmix.causal.model_dir import load_model_dir
from causalmix.causal.runs_table import read_runs_table
from sweep_helpers import synthetic_features, synthetic_trial, tiny_proxy_config

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


@pytest.mark.slow
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
    # Bring your own trainer: a plan of the same settings, trained by the docs' outside trainer
    # and collected, is the sweep's runs table (docs/bring-your-own-trainer.md)
    from examples.outside_trainer import train_plan

    plan = tmp_path / "plan"
    assert launch.main(["generate", *argv[1:argv.index("--out")], "--out", str(plan)]) == 0
    train_plan(plan).to_csv(tmp_path / "results.csv", index=False)
    assert launch.main(["collect", str(plan), "--results", str(tmp_path / "results.csv")]) == 0
    collected = read_runs_table(plan / "runs.parquet").frame
    same = [c for c in runs if c.startswith(("mix.", "x.", "metric.", "docs.", "state."))
            or c in ("run_id", "y", "y_objective", "seed", "sampler", "model")]
    assert len(same) > 30 and set(same) <= set(collected)
    pd.testing.assert_frame_equal(collected[same], runs[same])


def test_bad_input_names_the_problem(ray_local, tiny_env, tmp_path, capsys):
    argv = ["sweep", "--pool", str(tiny_env.pool_small), "--features", str(tmp_path / "none.parquet"),
            "--model", str(tiny_env.proxy_model), "--out", str(tmp_path / "o")]
    assert launch.main(argv) == 2
    assert "none.parquet" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert launch.main(["sweep", "--out", str(tmp_path / "o"), "--resume"]) == 2


@pytest.mark.slow
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
    """Sends the driver the signal Tune treats as Ctrl+C, once, after `after` finished runs."""

    def __init__(self, marker: str, after: int = 1, policy_round: tuple[str, int] | None = None):
        """policy_round (POLICY_JSONL, r): also wait until the fit actor has written round r."""
        self.marker = marker
        self.after = after
        self.policy_round = policy_round
        self.seen = 0

    def _round_written(self) -> bool:
        if self.policy_round is None:
            return True
        path, r = self.policy_round
        return os.path.exists(path) and any(json.loads(line).get("round") == r
                                            for line in Path(path).read_text().splitlines())

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if ROW_KEY not in result:  # a learning-curve report, not a finished run
            return
        self.seen += 1
        if self.seen >= self.after and self._round_written() and not os.path.exists(self.marker):
            Path(self.marker).write_text("interrupted")
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.mark.slow
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


@pytest.mark.slow
def test_resumed_adaptive_sweep_keeps_fitting_each_run_once(ray_local, tiny_env, features, tmp_path):
    """Issue 18 case 6: a sweep interrupted after enough runs to fit, then resumed. The trial
    running at the interruption had landed its row and reports it again on resume, beside the
    landed rows the driver feeds the fresh fit actor: each run_id must still reach the fit
    once, the rounds after the resume must fit on more runs, and RUN_DIR/model must hold all.
    Synthetic trials (no training) on the real driver, searcher, Tune and fit actor."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sweep_helpers)  # the workers cannot import tests/
    out = tmp_path / "sweep"
    cfg = sweep_config(tiny_env, features, out, runs=24, adaptive=0.5, adaptive_round=6,
                       max_concurrent=2,
                       adaptive_fit={"estimator": "regression", "treatment_featurizer": "log-only"})
    first = run_sweep(cfg, trainable=synthetic_trial, trainable_kwargs={"scramble": False},
                      callbacks=[InterruptOnce(str(tmp_path / "marker"), after=14,
                                               policy_round=(str(out / "policy.jsonl"), 2))])
    assert first["status"] == "interrupted"
    landed = first["runs_done"]
    assert 12 <= landed < 24
    assert first["fit_actor"]["n_runs"] == landed and first["fit_actor"]["model_dir"]
    assert load_model_dir(out / "model").n_runs == landed  # a fit before the interruption
    before = [json.loads(line) for line in (out / "policy.jsonl").read_text().splitlines()]
    assert {s.get("round"): s["n_runs"] for s in before}.get(2) == 12  # round 2's fit

    second = run_sweep(SweepConfig(**{**cfg.__dict__, "resume": True}), trainable=synthetic_trial,
                       trainable_kwargs={"scramble": False})
    assert second["status"] == "ok" and second["runs_done"] == 24
    runs = pd.read_parquet(out / "runs.parquet")
    assert runs["run_id"].is_unique and len(runs) == 24
    # every run reached the fit actor once (a duplicate would count twice here and fail its fits)
    assert second["fit_actor"]["n_runs"] == 24 and second["fit_actor"]["last_error"] is None
    after = [json.loads(line) for line in (out / "policy.jsonl").read_text().splitlines()][len(before):]
    assert {s.get("round"): s["n_runs"] for s in after}.get(3) == 18  # round 3, after the resume
    model = load_model_dir(out / "model")
    assert model.n_runs == 24
    assert (runs["sampler"] == "adaptive").any()
