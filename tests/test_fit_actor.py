"""Streaming refits: PolicyTracker (pure) and the FitActor Ray shell."""
import json
import time

import pytest

from causalmix.causal.fitting import FitConfig
from causalmix.causal.model_dir import load_model_dir
from causalmix.causal.streaming import PolicyTracker
from causalmix.core.errors import UserError
from structural import StructuralModel

FAST = FitConfig(estimator="regression", treatment_featurizer="log-only")


def _rows(n, seed=0):
    return StructuralModel(n_domains=3, seed=seed).runs(n).to_dict("records")


def test_tracker_publishes_increasing_versions_and_appends_jsonl(tmp_path):
    rows = _rows(90)
    target = {f"x.d{j}.quality": 0.0 for j in range(3)}
    tracker = PolicyTracker(config=FAST, run_dir=tmp_path, target_covariates=target, refit_every=30,
                            background=False)
    assert tracker.latest_snapshot() is None
    tracker.add_runs(rows[:10])
    assert tracker.latest_snapshot() is None            # fewer than refit_every new rows
    versions = []
    for start, stop in ((10, 40), (40, 70), (70, 90)):
        tracker.add_runs(rows[start:stop])
        snap = tracker.latest_snapshot()
        versions.append((snap["version"], snap["n_runs"]))
    assert versions == [(1, 40), (2, 70), (2, 70)]      # at 90 rows only 20 are new: no refit yet
    snap = tracker.refit()
    assert (snap["version"], snap["n_runs"]) == (3, 90)
    assert set(snap["returns"]) == {"d0", "d1", "d2"}
    assert all(r["interval"][0] <= r["estimate"] <= r["interval"][1] for r in snap["returns"].values())
    assert set(snap["policies"]) == {"analytic", "search"}
    assert snap["policies"]["analytic"]["policy"] == "analytic"
    lines = [json.loads(line) for line in (tmp_path / "policy.jsonl").read_text().splitlines()]
    assert [line["version"] for line in lines] == [1, 2, 3]
    out = tracker.write_model_dir(tmp_path / "model")
    model = load_model_dir(out)
    assert model.n_runs == 90 and model.estimator_name == "regression"


def test_tracker_rejects_bad_rows_and_reports_too_few_runs(tmp_path):
    tracker = PolicyTracker(config=FAST, refit_every=2, background=False)
    bad = _rows(2)
    bad[1]["y"] = float("nan")
    with pytest.raises(UserError, match="non-finite outcome"):
        tracker.add_runs(bad)
    tracker.add_runs(_rows(4))
    assert tracker.latest_snapshot() is None and "needs at least" in tracker.last_error
    with pytest.raises(UserError, match="no model to write"):
        tracker.write_model_dir(tmp_path / "m")


def test_adaptive_rounds_recommend_for_each_target_pool_in_turn():
    targets = [{f"x.d{j}.quality": v for j in range(3)} for v in (-1.0, 1.0)]
    tracker = PolicyTracker(config=FAST, target_covariates=targets, background=False)
    rows = _rows(40)
    picked = [tracker.round_snapshot(rows, r)["target_covariates"] for r in (1, 2, 3)]
    assert picked == [targets[0], targets[1], targets[0]]


@pytest.mark.ray
def test_fit_actor_refits_in_background_with_increasing_versions(ray_local, tmp_path):
    from causalmix.actors.sweep.fit_actor import FitActor

    rows = _rows(120, seed=2)
    actor = FitActor.remote(config={"estimator": "regression", "treatment_featurizer": "log-only"},
                            run_dir=str(tmp_path), refit_every=40)
    assert ray_local.get(actor.latest_snapshot.remote(), timeout=60) is None
    seen = []
    for start in range(0, 120, 40):
        ray_local.get(actor.add_runs.remote(rows[start:start + 40]), timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            snap = ray_local.get(actor.latest_snapshot.remote(), timeout=60)
            if snap and snap["n_runs"] == start + 40:
                seen.append(snap["version"])
                break
            time.sleep(0.05)
    assert seen == sorted(seen) and len(seen) == 3 and len(set(seen)) == 3
    path = ray_local.get(actor.write_model_dir.remote(str(tmp_path / "model")), timeout=120)
    assert load_model_dir(path).n_runs == 120
    assert len((tmp_path / "policy.jsonl").read_text().splitlines()) == 3
    ray_local.kill(actor)


def test_tracker_keys_runs_by_run_id_so_a_resume_keeps_fitting(tmp_path):
    """Issue 18, case 6: rows fed again on resume (by the driver and by re-reporting trials)
    are added once, and the next fit still runs on every distinct run."""
    tracker = PolicyTracker(config=FAST, refit_every=30, background=False)
    rows = _rows(90, seed=4)
    tracker.add_runs(rows[:60])
    assert tracker.latest_snapshot()["n_runs"] == 60
    assert tracker.add_runs(rows[:60]) == 60  # the resumed driver's landed rows
    assert tracker.add_runs(rows[30:90]) == 90  # trials re-reporting, plus 30 new runs
    snap = tracker.latest_snapshot()
    assert snap["n_runs"] == 90 and tracker.last_error is None
