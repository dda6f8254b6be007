"""Learning curves and experiment tracking: the curve hook (pure), the sweep's progress callback
fed curve reports, the tracker settings, the MLflow parent run, and a 3-run tracked sweep read
back through MLflow's own API."""
import json
import math

import pandas as pd
import pytest
import yaml

from causalmix import launch
from causalmix.actors.sweep.progress import SweepProgress
from causalmix.design.trial_protocol import ROW_KEY, curve_result, final_result
from causalmix.core.tracking import MlflowParent, parse_tracking
from causalmix.proxy.curves import LearningCurve, expected_points
from causalmix.proxy.train import StepInfo
from sweep_helpers import synthetic_features, tiny_proxy_config


def info(step_tokens=100, total=5, grad_norm=2.0):
    return StepInfo(lr=1e-3, grad_norm=grad_norm, tokens=step_tokens, scored_tokens=50, total_steps=total)


def test_curve_points_every_log_every_steps_and_on_the_last():
    points, seen = [], []
    now = iter([0.0, 1.0, 3.0, 4.0])
    curve = LearningCurve(2, points.append, then=lambda s, loss, i: seen.append(s), clock=lambda: next(now))
    for step in range(1, 6):
        curve(step, 1.0 / step, info(grad_norm=None if step == 5 else 2.0))
    assert [p["step"] for p in points] == [2, 4, 5] == list(range(2, 6, 2)) + [5]
    assert len(points) == expected_points(5, 2) and expected_points(4, 2) == 2
    assert seen == [1, 2, 3, 4, 5]
    # 200 tokens over the 1 s since the start, 200 over the 2 s since the point before, ...
    assert [p["tokens_per_s"] for p in points] == [200.0, 100.0, 100.0]
    assert points[0]["train_loss"] == 0.5 and points[0]["lr"] == 1e-3 and points[0]["step_tokens"] == 100
    assert points[0]["grad_norm"] == 2.0 and math.isnan(points[-1]["grad_norm"])
    with pytest.raises(ValueError, match="log_every"):
        LearningCurve(0, points.append)


def test_progress_and_runs_table_read_only_the_final_result(tmp_path):
    progress = SweepProgress(str(tmp_path / "runs.parquet"), total=1, show=False)
    progress.setup()
    for step in (1, 2):
        progress.on_trial_result(step, [], None, curve_result({"step": step, "train_loss": 1.0}))
    assert not progress.writer.rows and not (tmp_path / "runs.parquet").exists()
    row = {"run_id": "run-00000", "y": -1.5, "steps": 2, "metric.a_nll": 1.5, "mix.a": 1.0}
    final = final_result(row, json.dumps(row))
    assert final["metric.a_nll"] == 1.5 and final["timesteps_total"] == 2
    progress.on_trial_result(3, [], None, final)
    assert list(pd.read_parquet(tmp_path / "runs.parquet")["run_id"]) == ["run-00000"]
    assert progress.writer.best_y() == -1.5 and ROW_KEY not in curve_result({"step": 1})


def test_tracking_settings(tmp_path, monkeypatch):
    assert parse_tracking(None, tmp_path) is None and parse_tracking("none", tmp_path) is None
    local = parse_tracking("mlflow", tmp_path / "run")
    assert local.target == (tmp_path / "run" / "mlruns").as_uri() and local.experiment == "causalmix/run"
    assert parse_tracking("mlflow=http://127.0.0.1:5000", tmp_path).target == "http://127.0.0.1:5000"
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    wandb = parse_tracking("wandb=proj", tmp_path)
    assert (wandb.target, wandb.offline) == ("proj", True)
    monkeypatch.setenv("WANDB_API_KEY", "x")
    assert not parse_tracking("wandb", tmp_path).offline
    for bad in ("tensorboard", "mlflow="):
        with pytest.raises(ValueError, match="tracking"):
            parse_tracking(bad, tmp_path)


def test_parent_run_holds_the_fit_snapshots(tmp_path):
    import mlflow

    tracking = parse_tracking("mlflow", tmp_path)
    parent = MlflowParent(tracking, "sweep", params={"runs": 3})
    snapshots = [{"version": v, "n_runs": 8 * v, "fit_s": 0.5, "target_covariates": {"x.a.hes": 1.0},
                  "returns": {"a": {"estimate": 0.1 * v, "interval": [0, 1]}},
                  "policies": {"analytic": {"mixture": {"a": 0.6, "b": 0.4}, "expected_gain": 0.01}}}
                 for v in (1, 2)]
    assert parent.log_snapshots(snapshots) == 2
    parent.finish({"runs_done": 3})
    history = parent.client.get_metric_history(parent.run_id, "fit.returns.a.estimate")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.2)]
    metrics = parent.client.get_run(parent.run_id).data.metrics
    assert metrics["fit.policies.analytic.mixture.a"] == 0.6 and metrics["summary.runs_done"] == 3
    assert not any(k.startswith("fit.target_covariates") for k in metrics)
    mlflow.set_tracking_uri(tracking.target)
    runs = mlflow.search_runs(experiment_names=[tracking.experiment])
    assert list(runs["tags.causalmix.role"]) == ["sweep"] and list(runs["status"]) == ["FINISHED"]


@pytest.mark.ray
def test_three_run_sweep_tracked_in_mlflow(ray_local, tiny_env, tmp_path, capsys):
    import mlflow

    features = synthetic_features(tiny_env.pool_small, tmp_path / "features.parquet")
    out = tmp_path / "sweep"
    config = tmp_path / "sweep.yaml"
    proxy = {**tiny_proxy_config(tiny_env.proxy_model).__dict__, "log_every": 2}
    config.write_text(yaml.safe_dump({"proxy": proxy, "stream_fit": False}))
    argv = ["sweep", "--config", str(config), "--pool", str(tiny_env.pool_small), "--features", str(features),
            "--runs", "3", "--out", str(out), "--no-progress", "--tracking", "mlflow"]
    assert launch.main(argv) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["runs_done"] == 3
    table = pd.read_parquet(out / "runs.parquet").set_index("run_id")
    assert len(table) == 3 and table["y"].notna().all()

    tracking = parse_tracking("mlflow", out)
    mlflow.set_tracking_uri(tracking.target)
    runs = mlflow.search_runs(experiment_names=[tracking.experiment])
    parent = runs[runs["tags.causalmix.role"] == "sweep"]
    children = runs[runs["tags.causalmix.role"] != "sweep"].set_index("tags.causalmix.run_id")
    assert len(parent) == 1 and sorted(children.index) == sorted(table.index)
    assert (children["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]).all()
    client = mlflow.MlflowClient(tracking.target)
    domains = [c[len("mix."):] for c in table.columns if c.startswith("mix.")]
    for run_id, row in table.iterrows():
        child = children.loc[run_id]
        for d in domains:
            assert float(child[f"params.mixture/{d}"]) == pytest.approx(row[f"mix.{d}"])
            assert child[f"tags.state.{d}"] == row[f"state.{d}"]
        assert child["tags.causalmix.seed"] == str(row["seed"]) and child["tags.causalmix.sampler"] == "dirichlet"
        loss = client.get_metric_history(child["run_id"], "train_loss")
        assert len(loss) == expected_points(int(row["steps"]), 2) > 0
        assert [m.step for m in loss][-1] == int(row["steps"])
        assert loss[-1].value == pytest.approx(row["train_loss_last"])
        assert len(client.get_metric_history(child["run_id"], "grad_norm")) == len(loss)
        assert child["metrics.y"] == pytest.approx(row["y"])
        nll = [c for c in table.columns if c.startswith("metric.")]
        assert child[f"metrics.{nll[0]}"] == pytest.approx(row[nll[0]])
    # A resume keeps the sweep's tracker and its parent run; another tracker is refused up front.
    assert launch.main(["sweep", "--out", str(out), "--resume", "--tracking", "wandb"]) == 2
    assert "tracking is fixed" in capsys.readouterr().err
    assert launch.main(["sweep", "--out", str(out), "--resume", "--no-progress"]) == 0
    again = mlflow.search_runs(experiment_names=[tracking.experiment])
    assert list(again.loc[again["tags.causalmix.role"] == "sweep", "run_id"]) == list(parent["run_id"])
    assert set(again["status"]) == {"FINISHED"}


VALIDATION_ROWS = [{"run_id": f"{c}-seed{s}", "candidate": c, "seed": s, "sampler": "validation", "mix.a": w,
                    "mix.b": 1 - w, "state.a": "a-0000", "state.b": "b-0000,b-0001", "y": -1.0 - w,
                    "metric.a_nll": 1.0 + w, "steps": 3}
                   for c, w in (("equal", 0.5), ("causalmix-a", 0.7)) for s in (0, 1)]


def validation_curves():
    return {row["run_id"]: [{"step": 2, "train_loss": 2.0, "lr": 1e-3, "grad_norm": 1.0},
                            {"step": 3, "train_loss": 1.5, "lr": 5e-4, "grad_norm": 0.5}]
            for row in VALIDATION_ROWS}


def test_validation_runs_tracked_in_mlflow(tmp_path):
    import mlflow

    from causalmix.core.tracking import track_runs

    tracking = parse_tracking("mlflow", tmp_path / "validation")
    assert track_runs(tracking, "validate", VALIDATION_ROWS, validation_curves(), tags=("candidate",)) == 4
    mlflow.set_tracking_uri(tracking.target)
    runs = mlflow.search_runs(experiment_names=[tracking.experiment])
    children = runs[runs["tags.causalmix.role"].isna()].set_index("tags.causalmix.run_id")
    assert sorted(children.index) == sorted(r["run_id"] for r in VALIDATION_ROWS)
    child = children.loc["causalmix-a-seed1"]
    assert child["tags.causalmix.candidate"] == "causalmix-a" and child["tags.state.b"] == "b-0000,b-0001"
    assert float(child["params.mixture/a"]) == 0.7 and child["metrics.metric.a_nll"] == pytest.approx(1.7)
    history = mlflow.MlflowClient(tracking.target).get_metric_history(child["run_id"], "train_loss")
    assert [(m.step, m.value) for m in history] == [(2, 2.0), (3, 1.5)]


def test_validation_runs_tracked_in_wandb_offline(tmp_path, monkeypatch):
    from causalmix.core.tracking import track_runs

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    tracking = parse_tracking("wandb=causalmix-test", tmp_path)
    assert tracking.offline
    assert track_runs(tracking, "validate", VALIDATION_ROWS[:1], validation_curves()) == 1
    offline = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(list(run.glob("*.wandb")) for run in offline)  # parent + the run


def test_core_tracking_names_the_runs_tables_mixture_prefix():
    from causalmix.causal.runs_table import MIX
    from causalmix.core import tracking

    assert tracking.MIX == MIX
